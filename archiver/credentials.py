"""The secrets a configuration points to: a PBX's password, the state database's password and
the callbacks token, read from where the configuration says (the file itself, a password file,
an environment variable, a systemd credential), and the files holding one that others may read.

`archiver.config` holds values only; everything here touches the file system or the
environment. A secret that cannot be read raises `ConfigError` with a reason that never holds
the secret.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from archiver.config import (
    CallbacksConfig,
    Config,
    ConfigError,
    PbxConfig,
    StateConfig,
    WebLdapConfig,
)

__all__ = [
    "callbacks_token",
    "ldap_bind_password",
    "pbx_password",
    "read_credential",
    "readable_secret_files",
    "state_password",
]

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def pbx_password(pbx: PbxConfig) -> str:
    """Return the password from its configured source. Raise `ConfigError` if unreadable."""
    where = f"pbx {pbx.name!r}"
    if pbx.password is not None:
        return pbx.password.get_secret_value()
    if pbx.password_env is not None:
        return _from_environment(pbx.password_env, where)
    if pbx.credential is not None:
        return read_credential(pbx.credential, where)
    if pbx.password_file is None:  # unreachable: the config guarantees one source
        raise ConfigError([f"{where}: no password source"])
    return _read_secret_file(pbx.password_file, where)


def state_password(state: StateConfig) -> str | None:
    """The database password from its configured source, or None if none is configured.
    Raise `ConfigError` if the source is unreadable or empty."""
    where = "state"
    if state.password_env is not None:
        return _from_environment(state.password_env, where)
    if state.credential is not None:
        return read_credential(state.credential, where)
    if state.password_file is not None:
        return _read_secret_file(state.password_file, where)
    return None


def ldap_bind_password(ldap: WebLdapConfig) -> str | None:
    """The directory service account's password ([web.ldap] bind_password_file or
    bind_password_env), or None when none is configured. Raise `ConfigError` if unreadable."""
    if ldap.bind_password_env is not None:
        return _from_environment(ldap.bind_password_env, "web.ldap")
    if ldap.bind_password_file is not None:
        return _read_secret_file(ldap.bind_password_file, "web.ldap")
    return None


def callbacks_token(callbacks: CallbacksConfig) -> str | None:
    """Return the callbacks token from its source (None if none). Raise `ConfigError` if the
    credential is missing or not 16-128 URL-safe characters."""
    if callbacks.token is not None:
        return callbacks.token.get_secret_value()
    if callbacks.token_credential is None:
        return None
    token = read_credential(callbacks.token_credential, "callbacks")
    if not _TOKEN_RE.fullmatch(token):
        raise ConfigError(["callbacks: the token credential must be 16-128 of A-Z a-z 0-9 _ -"])
    return token


def read_credential(name: str, where: str) -> str:
    """Return the systemd credential `name` ($CREDENTIALS_DIRECTORY/name, from LoadCredential=).
    Raise `ConfigError` if it is not there."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError([f"{where}: credential {name!r} set but $CREDENTIALS_DIRECTORY is not"])
    return _read_secret_file(Path(directory) / name, where)


def _from_environment(name: str, where: str) -> str:
    """The secret in the environment variable `name`. Raise `ConfigError` saying whether it is
    not set at all (a unit without Environment=, a shell without export) or set but empty."""
    value = os.environ.get(name)
    if value is None:
        raise ConfigError([f"{where}: password_env: environment variable {name} is not set"])
    if not value:
        raise ConfigError([f"{where}: password_env: environment variable {name} is empty"])
    return value


def _read_secret_file(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError([f"{where}: cannot read secret file {path}: {error.strerror}"]) from None


def readable_secret_files(path: Path, cfg: Config) -> list[Path]:
    """The files holding a secret that users other than the owner can read: the config file
    at `path` itself if a PBX `password` or the callbacks `token` is in it, and every
    `password_file` (of the PBXs and of the state database)."""
    inline = any(pbx.password is not None for pbx in cfg.pbx) or cfg.callbacks.token is not None
    candidates = [path] if inline else []
    candidates += [pbx.password_file for pbx in cfg.pbx if pbx.password_file is not None]
    if cfg.state.password_file is not None:
        candidates.append(cfg.state.password_file)
    exposed = []
    for candidate in candidates:
        try:
            mode = candidate.stat().st_mode
        except OSError:
            continue  # unreadable or missing: pbx_password reports it
        if mode & 0o044:  # group or others may read it
            exposed.append(candidate)
    return exposed
