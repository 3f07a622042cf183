"""An archive with calls inside and outside a listener's scope, and the users of the compliance
tests: `ayse` (listener, extensions 100-199), `zeynep` (compliance), `admin`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from web_support import Client, Site, archive_day, users_file, web_table

from archiver.config import Config
from archiver.lab.seaweed import SeaweedS3
from archiver.state.catalogue import Catalogue, CatalogueEntry, SearchQuery
from archiver.state.migrate import open_database

PASSWORDS = {
    "ayse": "Ayse-Listens-2024",
    "zeynep": "Zeynep-Audits-77",
    "admin": "Admin-Sees-All-99",
}
# Extensions the simulator never uses: calls between them and outside numbers are out of scope.
OUTSIDE_PARTIES = [("250", "905321112233"), ("905329998877", "300")]


def compliance_table(tmp: Path, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "users_file": str(users_file(tmp / "compliance-users", PASSWORDS)),
        "users": {"ayse": {"role": "listener", "extensions": ["100-199"]}},
        "groups": {"officers": {"role": "compliance", "members": ["zeynep"]}},
        "max_export": 50,
    }
    values.update(overrides)
    return web_table(tmp, **values)


def archive_with_outside_calls(seaweed: SeaweedS3, tmp: Path, **web: object) -> Config:
    """One simulated day (every call has an extension 100-199) plus two calls outside that range:
    copies of an archived MP3 at new keys, catalogued with other parties."""
    cfg = archive_day(seaweed, tmp, compliance_table(tmp, **web))
    db = open_database(cfg.state.path)
    try:
        catalogue = Catalogue(db)
        template = catalogue.search(SearchQuery(limit=1)).items[0]
        client = seaweed.client()
        for index, (caller, callee) in enumerate(OUTSIDE_PARTIES):
            key = template.object_key.replace(".mp3", f"-outside{index}.mp3")
            source = f"{cfg.s3.bucket}/{template.object_key}"
            client.copy_object(Bucket=cfg.s3.bucket, Key=key, CopySource=source)
            outside = replace(
                template,
                object_key=key,
                caller=caller,
                callee=callee,
                recording_key=f"{template.recording_key}-outside{index}",
                source_name=f"outside{index}-{template.source_name}",
            )
            catalogue.upsert(outside)
    finally:
        db.close()
    return cfg


def split(site: Site) -> tuple[list[CatalogueEntry], list[CatalogueEntry]]:
    """The archive's calls inside ayse's scope and outside it."""
    entries = site.entries()
    outside = [e for e in entries if e.caller in {"250", "905329998877"}]
    inside = [e for e in entries if e not in outside]
    assert len(outside) == 2 and inside
    return inside, outside


def logged_in(site: Site, user: str) -> Client:
    """A client of `site` logged in as `user` (one of PASSWORDS)."""
    client = Client(site.url)
    assert client.login(user, PASSWORDS[user]) == 303
    return client
