"""The retention chaos run: an archive of recordings of every age in a local S3 (SeaweedFS, a
bucket with Object Lock) and a state (SQLite, or PostgreSQL with `--state postgresql`), a hold
on one number, then `archiver retention run --yes` SIGKILLed at random moments `--kills` times
and a last run to the end. It passes when every expired, unheld recording was destroyed exactly
once (one destruction-log row, no version left in the store, no catalogue row, the ledger
`destroyed`), every other recording is intact (the bytes in the store hash as uploaded, its
catalogue row and `verified` ledger row there), no claim is left pending and the destruction
log's hash chain verifies. Prints one line per kill and a summary; exit 1 on any breach.

    python -m archiver.lab.chaos_retention [--recordings 400] [--kills 5] [--seed N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.config import Config, load_config
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.logs import configure_logging
from archiver.names import Recording, parse_name
from archiver.retention import upload_lock
from archiver.s3 import S3Store, object_metadata
from archiver.state import BaseState, State, catalogue_entry, open_state

__all__ = ["archive_one", "call_recording", "main"]

_TZ = ZoneInfo("Europe/Istanbul")
_HELD_NUMBER = "905412535962"


@dataclass(frozen=True)
class _Item:
    rec: Recording
    key: str
    sha256: str  # of the MP3 bytes uploaded
    expired: bool
    held: bool


def call_recording(
    rng: random.Random, n: int, days_ago: float, callee: str, trunk: str = "trunk-sip-908502591905"
) -> Recording:
    """A call of `days_ago` days ago from a random extension to `callee` (unique by `n`)."""
    started = (datetime.now(UTC) - timedelta(days=days_ago)).astimezone(_TZ)
    name = (
        f"{started:%Y%m%d-%H%M%S}-{rng.randint(100, 199)}-{callee}-"
        f"{int(started.timestamp())}.{n}-{rng.randint(3, 600)}.gsm"
    )
    return parse_name("pbx", trunk, name, _TZ)


def archive_one(state: State, cfg: Config, store: S3Store, rec: Recording, work: Path) -> _Item:
    """Archive `rec` as the pipeline leaves it: an MP3's bytes in the store (with the lock an
    upload gets), the ledger `verified`, its catalogue row."""
    data = b"ID3" + os.urandom(1500)
    digest = hashlib.md5(data, usedforsecurity=False)
    md5_b64 = base64.b64encode(digest.digest()).decode()
    source = hashlib.sha256(rec.key.encode()).hexdigest()
    key = f"{cfg.s3.prefix}/{rec.pbx}/{rec.name.rsplit('.', 1)[0]}.mp3"
    path = work / "upload.mp3"
    path.write_bytes(data)
    store.put_verified(
        path, key, object_metadata(rec, source_sha256=source, md5_b64=md5_b64),
        md5_b64=md5_b64, md5_hex=digest.hexdigest(),
        lock=upload_lock(cfg.s3, rec, key, state.holds),
    )  # fmt: skip
    state.ledger.discover([rec])
    state.ledger.advance(rec.key, "transcoded", source_sha256=source)
    state.ledger.mark_verified(catalogue_entry(rec, object_key=key, size_bytes=len(data)))
    return _Item(rec, key, hashlib.sha256(data).hexdigest(), False, False)


def _config(folder: Path, s3: SeaweedS3, bucket: str, state_url: str | None) -> Path:
    state = f'url = "{state_url}"' if state_url else f'path = "{folder / "ledger.sqlite3"}"'
    path = folder / "archiver.toml"
    path.write_text(
        f"""[pbx]
url = "http://127.0.0.1:1"
username = "u"
password = "p"

[s3]
bucket = "{bucket}"
endpoint_url = "{s3.endpoint_url}"
region = "us-east-1"
addressing_style = "path"
object_lock = true

[state]
{state}

[destruction]
max_per_run = 100000

[[retention]]
keep_days = 365
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def _populate(cfg: Config, count: int, rng: random.Random, work: Path) -> list[_Item]:
    store = S3Store(cfg.s3)
    items: list[_Item] = []
    with contextlib.closing(open_state(cfg)) as state:
        state.holds.add("CHAOS-HOLD", by="chaos", number=_HELD_NUMBER, note="kept through chaos")
        for n in range(count):
            kind = n % 8
            held = kind == 0
            expired = kind in (0, 1, 2, 3, 4, 5)  # 6/8 past keep_days, one of those held
            days = rng.uniform(366, 900) if expired else rng.uniform(1, 300)
            callee = _HELD_NUMBER if held else f"90312{rng.randint(1000000, 9999999)}"
            item = archive_one(state, cfg, store, call_recording(rng, n, days, callee), work)
            if kind == 1:  # an extra version: destruction must reach every version
                store.put_bytes(item.key, b"an earlier upload")
                store.put_bytes(item.key, (work / "upload.mp3").read_bytes())
            items.append(_Item(item.rec, item.key, item.sha256, expired and not held, held))
    return items


def _kill_runs(config: Path, env: dict[str, str], kills: int, rng: random.Random,
               cfg: Config) -> None:  # fmt: skip
    """Start `retention run --yes` and SIGKILL it at a random moment of its destroying: once
    it has destroyed or claimed its first recording (a new log row or a new claim), after a
    further random 0-1.5 s; `kills` times."""
    with contextlib.closing(open_state(cfg, create=False)) as state:
        for attempt in range(1, kills + 1):
            before = state.destructions.count()
            claimed = {claim.recording_key for claim, _ in state.destructions.pending()}
            process = subprocess.Popen(
                [sys.executable, "-m", "archiver", "retention", "run", "--yes", "--config",
                 str(config)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            started = time.monotonic()
            while process.poll() is None and time.monotonic() - started < 120:
                now_claimed = {c.recording_key for c, _ in state.destructions.pending()}
                if state.destructions.count() > before or now_claimed - claimed:
                    break
                time.sleep(0.02)
            after_s = rng.uniform(0.0, 1.5)
            time.sleep(after_s)
            process.send_signal(signal.SIGKILL)
            process.wait()
            pending = len(state.destructions.pending())
            done = state.destructions.count()
            print(f"kill {attempt}: SIGKILL {after_s:.2f} s into its destroying, "
                  f"{time.monotonic() - started:.2f} s after start (exit {process.returncode}); "
                  f"destroyed by this run {done - before}, so far {done}, claims left pending "
                  f"{pending}", flush=True)  # fmt: skip


def _check(cfg: Config, items: list[_Item]) -> list[str]:
    store = S3Store(cfg.s3)
    problems: list[str] = []
    with contextlib.closing(open_state(cfg, create=False)) as state:
        assert isinstance(state, BaseState)  # noqa: S101 - open_state gives one
        log_rows = state.db.execute(
            "SELECT recording_key, COUNT(*) FROM destruction_log GROUP BY recording_key"
        ).rows
        logged = {str(key): int(count) for key, count in log_rows}
        for item in items:
            row = state.ledger.get(item.rec.key)
            in_catalogue = state.catalogue.get(item.key) is not None
            versions = store.version_ids(item.key)
            if item.expired:
                if logged.get(item.rec.key) != 1:
                    problems.append(f"{item.key}: logged {logged.get(item.rec.key, 0)} times")
                if versions or in_catalogue or row is None or row.state != "destroyed":
                    problems.append(f"{item.key}: not destroyed everywhere ({len(versions)} "
                                    f"versions, catalogue {in_catalogue})")  # fmt: skip
            else:
                body = store.get_bytes(item.key)
                if hashlib.sha256(body).hexdigest() != item.sha256:
                    problems.append(f"{item.key}: kept but its bytes changed or are gone")
                if not in_catalogue or row is None or row.state != "verified":
                    problems.append(f"{item.key}: kept but its catalogue or ledger row is not")
                if item.rec.key in logged:
                    problems.append(f"{item.key}: kept but in the destruction log")
        if state.destructions.pending():
            problems.append(f"{len(state.destructions.pending())} claim(s) left pending")
        chain = state.destructions.verify()
        if not chain.intact:
            problems.append(f"destruction log chain broken: {chain.first_break}")
        extra = set(logged) - {i.rec.key for i in items if i.expired}
        if extra:
            problems.append(f"{len(extra)} destroyed that should not have been")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="chaos-retention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recordings", type=int, default=400)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--state", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randint(1, 10**6)
    rng = random.Random(seed)  # noqa: S311 - chaos timing, not a secret
    configure_logging(level="warning", stream=sys.stderr)
    load = os.getloadavg()[0]
    print(f"chaos-retention: seed {seed}, {args.recordings} recordings, {args.kills} kills, "
          f"state {args.state}, load average {load:.2f}", flush=True)  # fmt: skip
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-ret-")))
        s3 = stack.enter_context(SeaweedS3())
        bucket = f"chaos-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(bucket, object_lock=True)
        url = None
        if args.state == "postgresql":
            url = stack.enter_context(LocalPostgres()).create_database()
        config = _config(folder, s3, bucket, url)
        cfg = load_config(config)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key,
               "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        items = _populate(cfg, args.recordings, rng, folder)
        expired = sum(i.expired for i in items)
        held = sum(i.held for i in items)
        print(f"archived {len(items)}: {expired} expired and unheld, {held} expired but held, "
              f"{len(items) - expired - held} young", flush=True)  # fmt: skip
        _kill_runs(config, env, args.kills, rng, cfg)
        started = time.monotonic()
        final = subprocess.run(
            [sys.executable, "-m", "archiver", "retention", "run", "--yes", "--config",
             str(config)],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        summary = final.stdout.strip().splitlines()[-1] if final.stdout.strip() else ""
        print(f"final run: exit {final.returncode} in {time.monotonic() - started:.1f} s: "
              f"{summary}", flush=True)  # fmt: skip
        problems = _check(cfg, items)
        if final.returncode != 0:
            problems.append(f"the final run exited {final.returncode}: {final.stderr[-500:]}")
        destroyed_once = expired - sum("logged" in p for p in problems)
        print(f"expected_destroyed {expired} destroyed_once {destroyed_once} "
              f"kept_intact {len(items) - expired} problems {len(problems)}")  # fmt: skip
        for problem in problems[:20]:
            print(f"PROBLEM {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
