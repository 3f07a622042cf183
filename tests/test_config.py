"""Configuration: the sample parses, and a bad file lists every problem with its path."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from archiver.config import (
    Config,
    ConfigError,
    PbxConfig,
    RetentionRule,
    config_path,
    load_config,
    parse_config,
)
from archiver.credentials import pbx_password, state_password

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {
    "pbx": {"url": "https://pbx.example:9999", "username": "u", "password": "hunter2secret"},
    "s3": {"bucket": "recordings"},
}


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = load_config(ROOT / "config.example.toml")
    assert cfg.pbx[0].timezone == "Europe/Istanbul"
    assert cfg.s3.key_template.endswith("_{uniqueid}.mp3")
    # The sample is the service's config: the password is the unit's LoadCredential=.
    (tmp_path / "pbx-password").write_text("from-credential\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert pbx_password(cfg.pbx[0]) == "from-credential"


def test_single_table_and_array_forms() -> None:
    one = parse_config(MINIMAL, "x.toml")
    many = parse_config({**MINIMAL, "pbx": [MINIMAL["pbx"], {**MINIMAL["pbx"], "name": "b"}]}, "x")
    assert [p.name for p in one.pbx] == ["pbx"]
    assert [p.name for p in many.pbx] == ["pbx", "b"]


def test_every_problem_listed_with_file_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        """
[pbx]
url = "https://u:p@pbx:9999/cgi-bin"
username = "admin"
password = "s3cr3t-do-not-print"
password_env = "ALSO"
timezone = "Mars/Olympus"
max_concurrent_requests = 0
colour = "blue"

[poll]
interval_s = 0

[s3]
bucket = "Bad_Bucket"
key_template = "{prefix}/{nope}.mp3"
sse_kms_key_id = "k"
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    problems = caught.value.problems
    text = "\n".join(problems)
    for path in (
        "pbx[0].url",
        "pbx[0].timezone",
        "pbx[0].max_concurrent_requests",
        "pbx[0].colour",
        "poll.interval_s",
        "s3.bucket",
        "s3.key_template",
    ):
        assert f"at '{path}'" in text, path
    assert all(re.match(rf"{re.escape(str(bad))}:\d+: at '", problem) for problem in problems)
    assert "s3cr3t-do-not-print" not in text


def test_cross_field_checks() -> None:
    # Cross-field checks run once the fields themselves are valid, section by section.
    with pytest.raises(ConfigError, match="pbx names must be unique"):
        parse_config({"pbx": [MINIMAL["pbx"], MINIMAL["pbx"]], "s3": MINIMAL["s3"]}, "x.toml")
    with pytest.raises(ConfigError, match=r"sse_kms_key_id is set but sse is not 'aws:kms'"):
        parse_config({**MINIMAL, "s3": {"bucket": "recordings", "sse_kms_key_id": "k"}}, "x")


def test_exactly_one_password_source() -> None:
    pbx = {k: v for k, v in MINIMAL["pbx"].items() if k != "password"}
    with pytest.raises(ConfigError, match="exactly one of password"):
        parse_config({**MINIMAL, "pbx": pbx}, "x.toml")


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n", encoding="utf-8")
    base = {k: v for k, v in MINIMAL["pbx"].items() if k != "password"}
    cfg = parse_config({**MINIMAL, "pbx": {**base, "password_file": str(secret_file)}}, "x")
    assert pbx_password(cfg.pbx[0]) == "from-file"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = parse_config({**MINIMAL, "pbx": {**base, "credential": "pw"}}, "x")
    assert pbx_password(cfg.pbx[0]) == "from-file"
    cfg = parse_config({**MINIMAL, "pbx": {**base, "password_env": "NOT_SET_ANYWHERE"}}, "x")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        pbx_password(cfg.pbx[0])
    monkeypatch.setenv("SET_BUT_EMPTY", "")
    cfg = parse_config({**MINIMAL, "pbx": {**base, "password_env": "SET_BUT_EMPTY"}}, "x")
    with pytest.raises(ConfigError, match="SET_BUT_EMPTY is empty"):
        pbx_password(cfg.pbx[0])


def test_password_never_in_repr() -> None:
    cfg = parse_config(MINIMAL, "x.toml")
    assert "hunter2secret" not in repr(cfg)
    assert "hunter2secret" not in str(cfg.model_dump())


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[pbx\nurl=", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARCHIVER_CONFIG", raising=False)
    assert config_path(None) == Path("/etc/archiver/archiver.toml")
    monkeypatch.setenv("ARCHIVER_CONFIG", "/tmp/a.toml")
    assert config_path(None) == Path("/tmp/a.toml")
    assert config_path(Path("/tmp/b.toml")) == Path("/tmp/b.toml")


def _documented_keys(text: str) -> dict[str, list[str]]:
    """The keys config.example.toml shows per section: set (`key = value`) or commented out
    (`# key = value`, where the rest parses as TOML; prose that merely starts so does not)."""
    keys: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        # A table shown only commented out (`# [[retention]]`: no rule unless one is written).
        header = re.fullmatch(r"(?:# )?\[\[?([a-z0-9_]+)\]\]?", line.strip())
        if header:
            section = header.group(1)
            keys.setdefault(section, [])
            continue
        candidate = line.removeprefix("# ") if line.startswith("# ") else line
        if not re.match(r"[a-z_]+ = ", candidate):
            continue
        try:
            (name,) = tomllib.loads(candidate)
        except tomllib.TOMLDecodeError:
            continue
        keys[section].append(name)
    return keys


def test_example_documents_every_key_and_no_other() -> None:
    """config.example.toml against the schema, field by field: each section of `Config` is in
    the sample and shows each of its fields, set or commented out (or both: an example beside the
    default), in that section, and nothing else (a new key cannot be left undocumented, nor a
    removed one linger)."""
    documented = _documented_keys((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    models: dict[str, type[BaseModel]] = {"pbx": PbxConfig, "retention": RetentionRule}
    for name, info in Config.model_fields.items():
        if name not in models:
            assert isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
            models[name] = info.annotation
    assert sorted(documented) == sorted(models)
    for section, model in models.items():
        assert sorted(set(documented[section])) == sorted(model.model_fields), section


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"url": "postgresql://archiver:Sekrit-1@db/archiver"}, "must not contain the password"),
        ({"url": "postgresql://archiver@db/archiver?password=Sekrit-1"}, "must not contain"),
        ({"url": "mysql://archiver@db/archiver"}, "must be postgresql://"),
        ({"url": "postgresql://a@db/x", "password_env": "A", "password_file": "/f"}, "at most one"),
        ({"password_env": "A"}, "url is not"),
    ],
)
def test_state_url_problems_are_named_without_the_password(
    state: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({**MINIMAL, "state": state}, "x.toml")
    assert message in str(raised.value)
    assert "Sekrit-1" not in str(raised.value)


def test_state_backend_password_and_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBPW", "from-env")
    state = {"url": "postgresql://a@db/x", "password_env": "DBPW", "sslmode": "verify-full"}
    cfg = parse_config({**MINIMAL, "state": state}, "x.toml")
    assert cfg.state.backend == "postgresql"
    assert state_password(cfg.state) == "from-env"
    assert cfg.state.tls_options() == {"sslmode": "verify-full"}
    assert parse_config(MINIMAL, "x.toml").state.backend == "sqlite"


def test_messages_in_plain_words_with_line_numbers(tmp_path: Path) -> None:
    """Issue 12 item 7: pydantic's words (`Extra inputs are not permitted`, a regex, `at least 16
    items`, `Input should be a valid string`) became messages an administrator can act on, each
    with its line; issue 12 item 4: an endpoint_url without a scheme passed check-config and
    crashed `run` with `ValueError: Invalid endpoint`."""
    bad = tmp_path / "archiver.toml"
    bad.write_text(
        """[pbx]
name = "ankara"
url = "http://127.0.0.1:9999"
username = "admin"
password = 98765432
max_concurent_requests = 2

[poll]
interval = 30

[s3]
bucket = "Bad_Bucket"
endpoint_url = "127.0.0.1:44477"
aws_secret_access_key = "x"

[callbacks]
token = "short"

[polls]
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.problems == [
        f"{bad}:5: at 'pbx[0].password': must be text: put it in quotes "
        '(e.g. password = "0123", not password = 0123)',
        f"{bad}:6: at 'pbx[0].max_concurent_requests': unknown key 'max_concurent_requests'; "
        "did you mean 'max_concurrent_requests'?",
        f"{bad}:9: at 'poll.interval': unknown key 'interval'; did you mean 'interval_s'?",
        f"{bad}:12: at 's3.bucket': must be an S3 bucket name: 3-63 lowercase letters, digits, "
        "dots and hyphens, starting and ending with a letter or digit",
        f"{bad}:13: at 's3.endpoint_url': must be a URL starting with http:// or https://, e.g. "
        "https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:8333",
        f"{bad}:14: at 's3.aws_secret_access_key': unknown key 'aws_secret_access_key': S3 "
        "credentials do not go in this file: boto3 finds them in the environment "
        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), in a shared-credentials file (under "
        "systemd: /etc/archiver/s3-credentials, see README 'Install as a service') or from an "
        "instance role",
        f"{bad}:17: at 'callbacks.token': must be at least 16 characters long",
        f"{bad}:19: at 'polls': unknown table [polls]; did you mean [poll]?",
    ]
    assert "98765432" not in "\n".join(caught.value.problems)


def test_bare_word_in_toml_says_quote_it(tmp_path: Path) -> None:
    bad = tmp_path / "a.toml"
    bad.write_text('[pbx]\nurl = "https://pbx:9999"\npassword = hunter2\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 3.*text values need quotes"):
        load_config(bad)


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ({"users": {"ayse": {"role": "owner"}}}, "web.users.ayse.role"),
        ({"users": {"ayse": {"extensions": ["100-1OO"]}}}, "write digits"),
        ({"groups": {"team": {"extensions": ["199-100"]}}}, "above the second"),
        ({"users": {"ayse": {"pbx": ["izmir"]}}}, "['izmir'], not configured pbx names"),
        ({"default_role": "root"}, "web.default_role"),
        ({"ldap": {"url": "ldap://dir.example", "user_dn_template": "uid={username}"}},
         "start_tls"),
        ({"ldap": {"url": "ldaps://dir.example"}}, "exactly one of user_dn_template"),
    ],
)  # fmt: skip
def test_web_roles_and_scopes_are_checked(web: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({**MINIMAL, "web": web}, "x.toml")
    assert message in str(raised.value)
