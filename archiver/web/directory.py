"""Directory login (`[web.ldap]`): a password checked by the organisation's OpenLDAP or Active
Directory, and the user's groups, which `[web.groups.NAME] directory_groups` turn into a role
and a scope (`archiver.web.roles`).

ldap3 (pure Python) speaks to the server, only over TLS with the server's certificate verified
(chain and host name): `ldaps://`, or `ldap://` with StartTLS before anything is sent. The
user's DN comes from a template or from a search with a service account. A wrong password is a
refusal; a server that cannot be reached, or a TLS failure, is `DirectoryUnavailable` (the login
page says so; local users keep logging in). An empty password is refused without asking the
server (LDAP would take it for an anonymous bind and say yes). Blocking: call in a thread.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
import sys
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import ldap3
import ldap3.core.tls
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from archiver.config import WebLdapConfig
from archiver.credentials import ldap_bind_password
from archiver.logs import register_secret

__all__ = ["Directory", "DirectoryUnavailable", "DirectoryUser", "open_directory"]

_INVALID_CREDENTIALS: Final = 49
_MAX_GROUPS: Final = 500


def _match_hostname(certificate: dict[str, Any], hostname: str) -> None:
    """ldap3 checks the server's name itself (it turns the ssl module's check off), and on
    Python 3.12+, where `ssl.match_hostname` is gone, it falls back to a backport that knows no
    IP addresses: a directory reached as `ldaps://10.0.0.5` was refused although its certificate
    names that address. Addresses are compared here with the certificate's IP entries; names go
    to ldap3's own matcher as before. Raises ldap3's CertificateError on a mismatch."""
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        _ldap3_match_hostname(certificate, hostname)
        return
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "IP Address" and ipaddress.ip_address(str(value).strip()) == address:
            return
    raise ldap3.core.tls.CertificateError(f"the certificate does not name {hostname}")


_ldap3_match_hostname = ldap3.core.tls.match_hostname
if sys.version_info >= (3, 12):
    ldap3.core.tls.match_hostname = _match_hostname


class DirectoryUnavailable(Exception):
    """The directory could not answer (down, unreachable, TLS refused); `reason` is safe to log
    and never holds a password."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A user the directory accepted: their DN and their groups (each as its DN and its cn)."""

    username: str
    dn: str
    groups: tuple[str, ...]


class Directory:
    """One configured directory."""

    def __init__(self, cfg: WebLdapConfig, bind_password: str | None = None) -> None:
        self._cfg = cfg
        self._bind_password = bind_password
        parts = urlsplit(cfg.url)
        self._ldaps = parts.scheme == "ldaps"
        self._host = parts.hostname or ""
        self._port = parts.port or (636 if self._ldaps else 389)
        ca_file = None if cfg.ca_file is None else str(cfg.ca_file)
        self._tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file, sni=self._host)

    def _server(self) -> ldap3.Server:
        return ldap3.Server(self._host, port=self._port, use_ssl=self._ldaps, tls=self._tls,
                            connect_timeout=self._cfg.timeout_s, get_info=ldap3.NONE)  # fmt: skip

    def _connect(self, user: str | None, password: str | None) -> tuple[ldap3.Connection, bool]:
        """A connection over verified TLS, bound as `user`; whether the bind succeeded."""
        # receive_timeout in whole seconds: ldap3 packs it as an integer.
        connection = ldap3.Connection(
            self._server(), user=user, password=password, auto_bind=ldap3.AUTO_BIND_NONE,
            receive_timeout=math.ceil(self._cfg.timeout_s), raise_exceptions=False,
            read_only=True,
        )  # fmt: skip
        connection.open()
        if not self._ldaps and not connection.start_tls():
            connection.unbind()
            raise DirectoryUnavailable(f"{self._cfg.url}: StartTLS refused")
        return connection, bool(connection.bind())

    def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The user if the directory accepts `password` for `username`, else None. Raise
        `DirectoryUnavailable` if the directory cannot answer."""
        if not password:
            return None
        try:
            dn = self._user_dn(username)
            if dn is None:
                return None
            connection, bound = self._connect(dn, password)
            try:
                if not bound:
                    if connection.result.get("result") == _INVALID_CREDENTIALS:
                        return None
                    raise DirectoryUnavailable(
                        f"{self._cfg.url}: bind failed: {connection.result.get('description')}"
                    )
                return DirectoryUser(username, dn, self._groups(connection, dn))
            finally:
                connection.unbind()
        except ldap_errors.LDAPException as error:
            raise DirectoryUnavailable(f"{self._cfg.url}: {self._reason(error)}") from None
        except OSError as error:
            raise DirectoryUnavailable(f"{self._cfg.url}: {error.strerror or error}") from None

    def _reason(self, error: Exception) -> str:
        """What went wrong in one line (ldap3 puts a whole certificate in some messages)."""
        text = str(error)
        if "doesn't match any name" in text:
            return f"TLS: the server's certificate is not for host {self._host} (name mismatch)"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            start = text.index("CERTIFICATE_VERIFY_FAILED")
            return "TLS: " + text[start:].split("(_ssl", 1)[0].strip(" ,'\")(")[:160]
        return f"{type(error).__name__}: {text[:200]}"

    def _user_dn(self, username: str) -> str | None:
        cfg = self._cfg
        if cfg.user_dn_template is not None:
            return cfg.user_dn_template.replace("{username}", escape_rdn(username))
        connection, bound = self._connect(cfg.bind_dn, self._bind_password)
        try:
            if not bound:
                raise DirectoryUnavailable(f"{cfg.url}: the service account's bind was refused")
            search = cfg.user_search_filter.replace("{username}", escape_filter_chars(username))
            connection.search(cfg.user_search_base or "", search, attributes=ldap3.NO_ATTRIBUTES,
                              size_limit=2)  # fmt: skip
            entries: list[Any] = list(connection.entries)
            return str(entries[0].entry_dn) if len(entries) == 1 else None
        finally:
            connection.unbind()

    def _groups(self, connection: ldap3.Connection, dn: str) -> tuple[str, ...]:
        cfg = self._cfg
        if cfg.group_search_base is None:
            return ()
        search = cfg.group_search_filter.replace("{user_dn}", escape_filter_chars(dn))
        connection.search(cfg.group_search_base, search, attributes=["cn"],
                          size_limit=_MAX_GROUPS)  # fmt: skip
        names: list[str] = []
        for entry in connection.entries:
            names.append(str(entry.entry_dn))
            names += [str(value) for value in entry.cn.values] if "cn" in entry else []
        return tuple(dict.fromkeys(names))


def open_directory(cfg: WebLdapConfig | None) -> Directory | None:
    """The configured directory (None without `[web.ldap]`); its service account's password is
    read now and kept out of every log line. Raise `ConfigError` if it cannot be read."""
    if cfg is None:
        return None
    password = ldap_bind_password(cfg)
    if password:
        register_secret(password)
    return Directory(cfg, password)
