"""Directory login against a real OpenLDAP (Debian's slapd, started here on 127.0.0.1): the
right password over LDAPS and StartTLS with the certificate verified, groups mapped to roles and
scopes, a wrong password refused, a server that is down refused with its own message while
local users still log in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from compliance_support import PASSWORDS, archive_with_outside_calls, split
from ldap_support import PEOPLE, SUFFIX, LocalSlapd, group_dn, user_dn
from web_support import Client, Site, s3_environment

from archiver.config import Config, WebLdapConfig
from archiver.lab.seaweed import SeaweedS3
from archiver.web.directory import Directory, DirectoryUnavailable

TEMPLATE = f"uid={{username}},ou=people,{SUFFIX}"


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlapd]:
    with LocalSlapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


def _config(slapd: LocalSlapd, **extra: object) -> WebLdapConfig:
    values: dict[str, object] = {"url": slapd.ldaps_url, "ca_file": slapd.ca_file,
                                 "user_dn_template": TEMPLATE,
                                 "group_search_base": f"ou=groups,{SUFFIX}"}  # fmt: skip
    values.update(extra)
    return WebLdapConfig.model_validate(values)


@pytest.mark.parametrize("tls", ["ldaps", "starttls"])
def test_the_right_password_gives_the_user_and_groups(slapd: LocalSlapd, tls: str) -> None:
    url = slapd.ldaps_url if tls == "ldaps" else slapd.ldap_url
    directory = Directory(_config(slapd, url=url, start_tls=tls == "starttls"))
    user = directory.authenticate("deniz", PEOPLE["deniz"])
    assert user is not None and user.dn == user_dn("deniz")
    assert group_dn("officers") in user.groups and "officers" in user.groups
    assert directory.authenticate("deniz", PEOPLE["ece"]) is None  # wrong password
    assert directory.authenticate("deniz", "") is None  # never an anonymous bind
    assert directory.authenticate("nosuchuser", "x") is None


def test_a_service_account_finds_the_user(slapd: LocalSlapd, tmp_path: Path) -> None:
    secret = tmp_path / "bind-pw"
    secret.write_text("Service-Account-9\n")
    secret.chmod(0o600)
    from archiver.web.directory import open_directory

    cfg = _config(slapd, user_dn_template=None, user_search_base=f"ou=people,{SUFFIX}",
                  bind_dn=f"cn=archiver,{SUFFIX}", bind_password_file=str(secret))  # fmt: skip
    directory = open_directory(cfg)
    assert directory is not None
    user = directory.authenticate("ece", PEOPLE["ece"])
    assert user is not None and user.dn == user_dn("ece") and "team-a" in user.groups
    assert directory.authenticate("ece*", PEOPLE["ece"]) is None  # a filter wildcard is text


def test_the_certificate_is_verified(slapd: LocalSlapd, tmp_path: Path) -> None:
    no_ca = Directory(_config(slapd, ca_file=None))  # the system's CAs do not know ours
    with pytest.raises(DirectoryUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        no_ca.authenticate("deniz", PEOPLE["deniz"])
    with LocalSlapd(tmp_path, right_name=False) as other:  # signed by its CA, for another host
        wrong_name = Directory(_config(other))
        with pytest.raises(DirectoryUnavailable, match="name mismatch"):
            wrong_name.authenticate("deniz", PEOPLE["deniz"])


@pytest.fixture(scope="module")
def archived(
    seaweed: SeaweedS3, slapd: LocalSlapd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Config]:
    tmp = tmp_path_factory.mktemp("directory-web")
    ldap = {"url": slapd.ldaps_url, "ca_file": str(slapd.ca_file),
            "user_dn_template": TEMPLATE, "group_search_base": f"ou=groups,{SUFFIX}",
            "timeout_s": 2}  # fmt: skip
    groups = {
        "officers": {"role": "compliance", "members": ["zeynep"],
                     "directory_groups": [group_dn("officers")]},
        "team-a": {"role": "listener", "extensions": ["100-199"],
                   "directory_groups": ["team-a"]},
    }  # fmt: skip
    with s3_environment(seaweed):
        yield archive_with_outside_calls(seaweed, tmp, ldap=ldap, groups=groups)


def _login_page(client: Client, name: str, password: str) -> tuple[int, bytes]:
    client.request("/login")
    status, _, body = client.request("/login", data={
        "username": name, "password": password,
        "csrf_token": client.cookie("archiver_csrf") or ""})  # fmt: skip
    return status, body


def test_directory_groups_give_roles_and_scopes(site: Site) -> None:
    inside, outside = split(site)
    officer = Client(site.url)
    assert _login_page(officer, "deniz", PEOPLE["deniz"])[0] == 303
    assert officer.request("/audit")[0] == 200  # officers -> compliance
    listener = Client(site.url)
    assert _login_page(listener, "ece", PEOPLE["ece"])[0] == 303
    assert listener.request("/audit")[0] == 403  # team-a -> listener
    audio = "/audio/" + outside[0].object_key
    assert listener.request(audio)[0] == 404  # ... scoped to 100-199
    assert (
        listener.request("/audio/" + inside[0].object_key, headers={"Range": "bytes=0-9"})[0] == 206
    )
    # A directory user with no mapped group gets default_role and the whole archive.
    plain = Client(site.url)
    assert _login_page(plain, "fikret", PEOPLE["fikret"])[0] == 303
    assert plain.request(audio, headers={"Range": "bytes=0-9"})[0] == 206
    # Scripts log in with the directory too.
    assert Client(site.url).request("/api/recordings", basic=("deniz", PEOPLE["deniz"]))[0] == 200
    assert Client(site.url).request("/api/recordings", basic=("deniz", "wrong"))[0] == 401


def test_a_wrong_directory_password_is_refused(site: Site) -> None:
    status, body = _login_page(Client(site.url), "ece", "not-her-password")
    assert status == 401 and b"directory" not in body.lower()


def test_a_directory_that_is_down_refuses_while_local_users_log_in(
    site: Site, slapd: LocalSlapd
) -> None:
    slapd.stop()
    try:
        status, body = _login_page(Client(site.url), "deniz", PEOPLE["deniz"])
        assert status == 503
        assert re.search(rb"directory \(LDAP\) cannot be reached", body), body[-2000:]
        basic = Client(site.url).request("/api/recordings", basic=("deniz", PEOPLE["deniz"]))
        assert basic[0] == 503
        assert _login_page(Client(site.url), "zeynep", PASSWORDS["zeynep"])[0] == 303
    finally:
        slapd.start()
    assert _login_page(Client(site.url), "deniz", PEOPLE["deniz"])[0] == 303
