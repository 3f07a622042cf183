"""The PBX checks, in the order a connection is made: the address resolves, TCP connects, TLS
(certificate subject, expiry and SHA-256 printed with the config line that pins it), the
credentials are accepted, the folder listing names a folder, today's `find` answers, and the
newest recording's uniqueid epoch agrees with the configured time zone. A failed step skips the
steps after it. Details carry names, numbers and sanitised reasons only, never the password."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from archiver.config import PbxConfig
from archiver.doctor.result import Check, failed, passed, skipped
from archiver.names import RECORDING_ROOT, InvalidName, Recording, parse_path
from archiver.pbx import PbxAuthError, PbxClient, PbxError, PbxLoginPage, date_pattern

__all__ = ["check_pbx", "fingerprint_line"]

_TIMEOUT_S: Final = 10.0
_TZ_MISMATCH_S: Final = 900  # as the daemon's own warning


async def check_pbx(cfg: PbxConfig, password: str, now: datetime) -> list[Check]:
    """Every check of one PBX; `now` is the wall clock (aware)."""
    prefix = f"pbx {cfg.name}"
    steps = [
        "address resolves",
        "TCP connects",
        "TLS",
        "credentials accepted",
        "folder listing",
        "today's find",
        "time zone",
    ]
    names = [f"{prefix}: {step}" for step in steps]
    checks: list[Check] = []

    def rest(why: str) -> list[Check]:
        return checks + [skipped(name, why) for name in names[len(checks) :]]

    parts = urlsplit(cfg.url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    checks.append(await _resolves(names[0], host, port))
    if not checks[-1].ok:
        return rest("the address does not resolve")
    checks.append(await _connects(names[1], host, port))
    if not checks[-1].ok:
        return rest("no TCP connection")
    if parts.scheme == "https":
        checks.append(await _tls(names[2], cfg, host, port))
        if not checks[-1].ok:
            return rest("TLS failed")
    else:
        checks.append(
            passed(names[2], "not used (http://): the password crosses the network in clear")
        )
    quick = cfg.model_copy(update={"request_timeout_s": min(cfg.request_timeout_s, 20.0)})
    client = PbxClient(quick, password)
    try:
        checks += await _api_checks(names[3:], client, cfg, now)
    finally:
        await client.close()
    return rest("an earlier check failed")


async def _resolves(name: str, host: str, port: int) -> Check:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), _TIMEOUT_S
        )
    except (OSError, TimeoutError) as error:
        reason = getattr(error, "strerror", None) or "timed out"
        return failed(
            name,
            f"{host!r} does not resolve ({reason})",
            "check the host in pbx.url, and this machine's DNS or /etc/hosts",
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    return passed(name, f"{host} -> {', '.join(addresses[:4])}")


async def _connects(name: str, host: str, port: int) -> Check:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), _TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        reason = getattr(error, "strerror", None) or "timed out"
        return failed(
            name,
            f"cannot connect to {host}:{port} ({reason})",
            "is the PBX up, and is its port open from this host (firewall, pbx.url's port)?",
        )
    writer.close()
    return passed(name, f"{host}:{port} accepts connections")


def fingerprint_line(certificate: x509.Certificate) -> str:
    """The config line that pins `certificate`."""
    return f'tls_fingerprint = "{_sha256(certificate)}"'


def _sha256(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


async def _peer_certificate(host: str, port: int) -> bytes:
    """The server's certificate (DER), fetched without verifying it, to describe it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host), _TIMEOUT_S
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.close()
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return bytes(der)


async def _verify(cfg: PbxConfig, host: str, port: int) -> str | None:
    """None if the certificate passes the configured check, else why not."""
    context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), _TIMEOUT_S
        )
    except ssl.SSLCertVerificationError as error:
        return f"not trusted ({error.verify_message})"
    except (OSError, TimeoutError) as error:
        return f"handshake failed ({type(error).__name__})"
    writer.close()
    return None


async def _tls(name: str, cfg: PbxConfig, host: str, port: int) -> Check:
    try:
        der = await _peer_certificate(host, port)
    except (OSError, TimeoutError) as error:
        return failed(
            name,
            f"no TLS handshake ({type(error).__name__})",
            "is pbx.url's scheme right (https:// on port 9999)?",
        )
    certificate = x509.load_der_x509_certificate(der)
    pin = fingerprint_line(certificate)
    expires = certificate.not_valid_after_utc
    described = (
        f"subject {certificate.subject.rfc4514_string()}, expires {expires:%Y-%m-%d}, "
        f"SHA-256 {_sha256(certificate)}"
    )
    problem: str | None
    if cfg.tls_fingerprint is not None:
        actual = certificate.fingerprint(hashes.SHA256()).hex()
        problem = None if actual == cfg.tls_fingerprint else "does not match tls_fingerprint"
    elif not cfg.verify_tls:
        return passed(name, f"{described}; NOT verified (verify_tls = false); to pin it: {pin}")
    else:
        problem = await _verify(cfg, host, port)
    if problem is None and expires < datetime.now(UTC):
        problem = "expired"
    if problem is not None:
        return failed(
            name,
            f"certificate {problem}: {described}",
            f"pin this certificate in [pbx]: {pin} (or set ca_file)",
        )
    return passed(name, f"{described}; pinned by: {pin}")


async def _api_checks(
    names: Sequence[str], client: PbxClient, cfg: PbxConfig, now: datetime
) -> list[Check]:
    credentials, folders_name, find_name, tz_name = names
    try:
        folders = await client.list_folders()
    except (PbxAuthError, PbxLoginPage) as error:
        return [failed(credentials, f"refused: {error.reason}", _password_fix(cfg))]
    except PbxError as error:
        return [
            failed(
                credentials,
                f"no usable answer: {error.reason}",
                "check pbx.url; is this the PBX's web interface (port 9999)?",
            )
        ]
    checks = [passed(credentials, f"accepted for user {cfg.username!r} (no login page)")]
    if not folders.lines:
        checks.append(
            failed(
                folders_name,
                "the folder listing of the recording root is empty: the PBX runs no command "
                "(system_cmd.cgi answers an empty page)",
                "check the PBX firmware's system_cmd.cgi (see README, `--cgi-strict`); the daemon "
                "does not trust an empty listing",
            )
        )
        return checks
    shown = ", ".join(folders.lines[:3]) + (" ..." if len(folders.lines) > 3 else "")
    checks.append(passed(folders_name, f"{len(folders.lines)} folder(s): {shown}"))
    tz = ZoneInfo(cfg.timezone)
    today = now.astimezone(tz).date()
    try:
        listing = await client.find(date_pattern(today))
    except PbxError as error:
        checks.append(failed(find_name, error.reason, "see the reason; `archiver ls` retries it"))
        return checks
    checks.append(passed(find_name, f"{len(listing.lines)} recording(s) listed for {today}"))
    newest = await _newest(client, cfg, listing.lines, folders.lines)
    checks.append(_timezone(tz_name, cfg, newest))
    return checks


def _password_fix(cfg: PbxConfig) -> str:
    source = (
        "password"
        if cfg.password is not None
        else f"password_file {cfg.password_file}"
        if cfg.password_file is not None
        else f"password_env {cfg.password_env}"
        if cfg.password_env is not None
        else f"credential {cfg.credential!r}"
    )
    return f"fix pbx.username ({cfg.username!r}) or the password (from {source})"


async def _newest(
    client: PbxClient, cfg: PbxConfig, today: Sequence[str], folders: Sequence[str]
) -> Recording | None:
    """The newest parseable recording: of today's listing, else of the first folder's files."""
    tz = ZoneInfo(cfg.timezone)
    found = _parsed(cfg.name, today, tz)
    if not found and folders:
        try:
            files = await client.list_files(folders[0])
        except (PbxError, ValueError):
            return None
        found = _parsed(cfg.name, [f"{folders[0]}/{line}" for line in files.lines], tz)
    return max(found, key=lambda rec: rec.started_at, default=None)


def _parsed(pbx: str, lines: Sequence[str], tz: ZoneInfo) -> list[Recording]:
    found = []
    for line in lines:
        path = line if line.startswith("/") else f"{RECORDING_ROOT}{line}"
        try:
            found.append(parse_path(pbx, path, tz))
        except InvalidName:
            continue
    return found


def _timezone(name: str, cfg: PbxConfig, newest: Recording | None) -> Check:
    if newest is None:
        return skipped(name, "no recording to compare against yet")
    drift_s = newest.uniqueid_epoch_s - newest.started_at.timestamp()
    if abs(drift_s) <= _TZ_MISMATCH_S:
        return passed(
            name, f"{cfg.timezone}: {newest.name} agrees with its uniqueid ({drift_s:+.0f} s)"
        )
    # The name is local time; the uniqueid is UTC: their difference is the PBX's offset.
    naive_local = newest.started_at.replace(tzinfo=None)
    utc = datetime.fromtimestamp(newest.uniqueid_epoch_s, UTC).replace(tzinfo=None)
    offset_min = round((naive_local - utc).total_seconds() / 900) * 15
    sign = "+" if offset_min >= 0 else "-"
    offset = f"UTC{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    return failed(
        name,
        f"{newest.name}: its uniqueid is {drift_s:+.0f} s from its name's time in {cfg.timezone}",
        f"the PBX's clock looks like {offset}: set pbx.timezone to that zone",
    )
