"""Configuration: one TOML file, validated once, as a whole, at start.

Unknown keys are rejected (a typo must not silently do nothing) and every problem is reported with
the file name and its dotted path, e.g. ``archiver.toml: at 'pbx[0].url': ...``. Cross-field checks
run after the field checks. Values only: reading the secrets a configuration points to (password
files, systemd credentials, the environment) and checking their file modes is
`archiver.credentials`. This module imports nothing of ours but `archiver.scope` (a leaf: the
extension ranges a web user's scope is written in).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import string
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from archiver.scope import InvalidScope, Scope

__all__ = [
    "DEFAULT_CALLBACK_PATH",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_KEY_TEMPLATE",
    "DETAIL_PATTERN",
    "KEY_FIELDS",
    "AutocallConfig",
    "BackfillConfig",
    "CallbacksConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DestructionConfig",
    "HttpConfig",
    "PauseWindow",
    "PbxConfig",
    "PollConfig",
    "RetentionRule",
    "RetryConfig",
    "S3Config",
    "StateConfig",
    "TranscodeConfig",
    "UnknownPbx",
    "WebConfig",
    "WebGroupConfig",
    "WebLdapConfig",
    "WebRole",
    "WebUserConfig",
    "config_path",
    "load_config",
    "parse_config",
    "parse_window",
    "postgres_url_secrets",
    "retention_warnings",
    "work_dir_problem",
]

DEFAULT_CONFIG_PATH = Path("/etc/archiver/archiver.toml")
DEFAULT_CALLBACK_PATH = "/pbx/call-result"
DEFAULT_KEY_TEMPLATE = (
    "{prefix}/{pbx}/{yyyy}/{mm}/{dd}/{yyyymmdd}-{hhmmss}_{caller}_{callee}_{uniqueid}.mp3"
)
# Every placeholder a key template may use; all are allow-listed values of a parsed name.
KEY_FIELDS = frozenset(
    {
        "prefix", "pbx", "trunk", "yyyy", "mm", "dd", "yyyymmdd", "hhmmss",
        "caller", "callee", "uniqueid", "duration_s", "source_name",
    }
)  # fmt: skip
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_BITRATE_RE = re.compile(r"[0-9]{1,3}k")
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class UnknownPbx(KeyError):
    """A PBX name (from `--pbx`) that the configuration does not have."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.message = f"no PBX named {name!r} in the configuration; configured: {', '.join(known)}"

    def __str__(self) -> str:
        return self.message


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_country(value: str) -> str:
    import phonenumbers  # its metadata, only when a country is given

    if phonenumbers.PhoneMetadata.metadata_for_region(value.upper()) is None:
        raise ValueError("must be an ISO 3166 country code phonenumbers knows (TR, US, DE...)")
    return value.upper()


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class PbxConfig(_Strict):
    """One PBX. The password comes from exactly one of: password, password_file, password_env,
    or (under systemd's LoadCredential=) the file `$CREDENTIALS_DIRECTORY/<credential>`."""

    name: Annotated[str, Field(pattern=rf"^{_NAME_RE.pattern}$")] = "pbx"
    url: str
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None
    credential: str | None = None
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "Europe/Istanbul"
    # The PBX's country (ISO 3166, e.g. TR, US) for reading and writing its numbers in the web
    # archive; None: [web] country.
    country: Annotated[str, AfterValidator(_check_country)] | None = None
    # A party of at most this many digits is an extension of this PBX (direction in/out).
    extension_digits: Annotated[int, Field(ge=1, le=15)] = 6
    verify_tls: bool = True
    ca_file: Path | None = None
    tls_fingerprint: str | None = None
    max_concurrent_requests: Annotated[int, Field(ge=1, le=16)] = 2
    # Requests in flight adapt between 1 and max_concurrent_requests to the PBX's answer time
    # (fewer when it answers slowly, slowly more when it recovers); false: always the maximum.
    adaptive_concurrency: bool = True
    # Download bandwidth cap for this PBX, shared by every request to it (listings, downloads;
    # the live poll and a backfill in this process together). None: no cap.
    max_download_kbps: Annotated[float, Field(ge=8, le=10_000_000)] | None = None
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    # Every request ends within this (a download: this plus its size cap at the minimum rate),
    # and once a body is flowing it must bring at least min_transfer_bytes_per_s averaged over
    # each transfer_window_s: a server that drips one byte at a time is cut off.
    request_deadline_s: Annotated[float, Field(gt=0, le=86400)] = 300.0
    min_transfer_bytes_per_s: Annotated[float, Field(gt=0, le=1e9)] = 1024.0
    transfer_window_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @field_validator("url")
    @classmethod
    def _url_is_plain_base(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?/?", value):
            raise ValueError(
                "must be http(s)://HOST[:PORT] with no path, user or query "
                "(credentials go in username/password)"
            )
        return value.rstrip("/")

    @field_validator("tls_fingerprint")
    @classmethod
    def _fingerprint_is_sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = value.replace(":", "").lower()
        if _FINGERPRINT_RE.fullmatch(normalised) is None:
            raise ValueError("must be the certificate's SHA-256 as 64 hex digits (colons allowed)")
        return normalised

    @model_validator(mode="after")
    def _one_password_source(self) -> PbxConfig:
        sources = [self.password, self.password_file, self.password_env, self.credential]
        given = sum(source is not None for source in sources)
        if given != 1:
            raise ValueError(
                "give exactly one of password, password_file, password_env, credential "
                f"(got {given})"
            )
        if self.tls_fingerprint is not None and self.ca_file is not None:
            raise ValueError("give ca_file or tls_fingerprint, not both")
        return self

    @model_validator(mode="after")
    def _tls_settings_agree(self) -> PbxConfig:
        # A setting that silently does nothing is a setting someone relies on in vain.
        given = [name for name in ("ca_file", "tls_fingerprint") if getattr(self, name)]
        if given and not self.url.startswith("https://"):
            raise ValueError(
                f"{' and '.join(given)} apply to https only, and url is http:// (nothing would "
                "be checked): use an https:// url or remove them"
            )
        if not self.verify_tls and self.ca_file is not None:
            raise ValueError("verify_tls = false ignores ca_file: remove one of them")
        return self

    @model_validator(mode="after")
    def _cap_above_the_transfer_floor(self) -> PbxConfig:
        # The cap is shared by the requests in flight; each must still beat the floor below
        # which a transfer counts as stalled, or every capped download would be cut off.
        if self.max_download_kbps is not None:
            per_request = self.max_download_kbps * 1000 / 8 / self.max_concurrent_requests
            if per_request < self.min_transfer_bytes_per_s:
                raise ValueError(
                    f"max_download_kbps {self.max_download_kbps:g} shared by "
                    f"{self.max_concurrent_requests} requests is {per_request:g} B/s each, below "
                    f"min_transfer_bytes_per_s {self.min_transfer_bytes_per_s:g}: raise the cap, "
                    "or lower max_concurrent_requests or min_transfer_bytes_per_s"
                )
        return self

    @property
    def cleartext_remote(self) -> bool:
        """http:// to a host that is not this machine: the password crosses the network in
        clear. (Loopback stays quiet: the simulator and the tests use it.)"""
        match = re.fullmatch(r"http://(\[[^\]]+\]|[^:/]+)(:[0-9]+)?", self.url)
        if match is None:
            return False
        host = match[1].strip("[]")
        if host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return True  # a host name: it could resolve anywhere

    @property
    def tls_unverified(self) -> bool:
        """HTTPS with neither certificate verification nor a pinned fingerprint."""
        return (
            self.url.startswith("https://") and not self.verify_tls and self.tls_fingerprint is None
        )


class PollConfig(_Strict):
    interval_s: Annotated[float, Field(ge=1, le=86400)] = 60.0
    lookback_days: Annotated[int, Field(ge=0, le=366)] = 1
    settle_s: Annotated[float, Field(ge=0, le=86400)] = 120.0


class TranscodeConfig(_Strict):
    bitrate: Annotated[str, Field(pattern=rf"^{_BITRATE_RE.pattern}$")] = "32k"
    ffmpeg: str | None = None
    # None: one per CPU this process may use (affinity and cgroup quota; pipeline/cpus.py).
    workers: Annotated[int, Field(ge=1, le=256)] | None = None
    # What to do with a header-only or zero-length source (an unanswered call): "skip" records
    # it as `empty`; "quarantine" also stores the original bytes under {prefix}/quarantine/.
    on_empty: Literal["skip", "quarantine"] = "skip"
    # "auto": pydub for a recording that finds the transcoders idle, the batching ffmpeg engine
    # for those that queue up (a backlog); both write the same MP3 (README, "Speed").
    engine: Literal["auto", "pydub", "ffmpeg"] = "auto"
    batch_files: Annotated[int, Field(ge=1, le=64)] = 16
    # LAME's algorithm quality (`lame -q`, ffmpeg's -compression_level): 0 slowest .. 9
    # fastest, at the same bitrate. 3 is LAME's own default (what ffmpeg does untold); 7 costs
    # a third less encoder CPU and measured no worse on 8 kHz speech (README, "LAME quality").
    lame_quality: Annotated[int, Field(ge=0, le=9, strict=True)] = 7


class S3Config(_Strict):
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: Annotated[str, Field(pattern=rf"^{_PREFIX_RE.pattern}$")] = "recordings"
    endpoint_url: str | None = None
    region: str | None = None
    key_template: str = DEFAULT_KEY_TEMPLATE
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    storage_class: str | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key_id: str | None = None
    checksum: Literal["when_supported", "when_required"] = "when_supported"
    max_concurrent_uploads: Annotated[int, Field(ge=1, le=64)] = 4
    # At start, incomplete multipart uploads under the prefix older than this are aborted.
    stale_multipart_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 86400.0
    # S3 Object Lock (a bucket created with Object Lock enabled): with object_lock, a legal hold
    # (`archiver hold`) is also set on the held objects in the store; with retain_days, every
    # upload carries a retain-until date (the call's start plus retain_days) in retain_mode,
    # which nobody (COMPLIANCE) or only a bypass (GOVERNANCE) can shorten. Destruction waits
    # for it.
    object_lock: bool = False
    retain_days: Annotated[int, Field(ge=1, le=36500)] | None = None
    retain_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        # boto3 refuses these only when the client is made: at `run`, with a traceback.
        if value is not None and not re.fullmatch(
            r"https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?", value
        ):
            raise ValueError(
                "must be a URL starting with http:// or https://, e.g. "
                "https://s3.eu-central-1.amazonaws.com or http://127.0.0.1:8333"
            )
        return value

    @field_validator("region")
    @classmethod
    def _region_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
            raise ValueError("must be a region name like eu-central-1 (lowercase, digits, '-')")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_has_no_dot_segments(cls, value: str) -> str:
        if any(segment in (".", "..") for segment in value.split("/")):
            raise ValueError("must not contain '.' or '..' segments")
        return value

    @field_validator("key_template")
    @classmethod
    def _template_uses_known_fields(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as error:
            raise ValueError(f"not a valid template: {error}") from None
        unknown = sorted(fields - KEY_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder(s) {unknown}; known: {sorted(KEY_FIELDS)}")
        if "uniqueid" not in fields:
            raise ValueError("must contain {uniqueid}, or two calls could share one key")
        if value.startswith("/") or value.endswith("/") or "//" in value or ".." in value:
            raise ValueError("must not start or end with '/' or contain '//' or '..'")
        if not value.isascii() or not value.isprintable():
            raise ValueError("must be printable ASCII")
        return value

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> S3Config:
        if self.sse_kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError("sse_kms_key_id is set but sse is not 'aws:kms'")
        return self

    @property
    def uses_object_lock(self) -> bool:
        """Legal holds or retain-until dates go to the store: the bucket must enforce them."""
        return self.object_lock or self.retain_days is not None


# Folders a work_dir must never be: a typo that points here is a typo, and the work folder is
# promised to the daemon alone.
_SYSTEM_FOLDERS = frozenset(
    Path(p)
    for p in (
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt",
        "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/usr/bin", "/usr/lib",
        "/usr/local", "/usr/sbin", "/usr/share", "/var", "/var/cache", "/var/lib", "/var/log",
        "/var/spool",
        "/tmp", "/var/tmp",  # noqa: S108  (named to be refused, not used)
    )
)  # fmt: skip


# libpq's connection parameters that carry a secret (`passfile` and `sslkey` name files).
_SECRET_CONNINFO_KEYS: Final = ("password", "sslpassword")


def _conninfo(url: str) -> dict[str, str]:
    """`url`'s connection parameters read as libpq reads them (percent-decoded names and values,
    the userinfo, every query parameter). Raise ValueError if libpq cannot read it."""
    from psycopg import ProgrammingError, conninfo

    try:
        params = conninfo.conninfo_to_dict(url)
    except ProgrammingError as error:
        raise ValueError(str(error)) from None
    return {name: str(value) for name, value in params.items() if value is not None}


def postgres_url_secrets(url: str) -> list[str]:
    """The names of the secrets libpq would take from `url` (e.g. `password` from
    `user:pw@host` or from `?pass%77ord=`). Raise ValueError if libpq cannot read it."""
    params = _conninfo(url)
    return [name for name in _SECRET_CONNINFO_KEYS if params.get(name)]


def _local_database_host(host: str) -> bool:
    """A Unix socket folder, `localhost` or a loopback address: no network in between."""
    if host.startswith("/") or host.startswith("@") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def work_dir_problem(work_dir: Path, state_path: Path) -> str | None:
    """Why `work_dir` must not hold the work files of the state file `state_path` (it contains
    the state file, or is a system folder or a home), or None if it may. Compared as written
    (made absolute) and with symlinks resolved."""
    for work, state in (
        (_absolute(work_dir), _absolute(state_path)),
        (work_dir.resolve(), state_path.resolve()),
    ):
        if work in _SYSTEM_FOLDERS or work == Path.home():
            return f"work_dir {str(work_dir)!r} is a system folder: give the work files their own"
        if state.is_relative_to(work):
            return (
                f"work_dir {str(work_dir)!r} contains the state file: give the work files a "
                "folder of their own (e.g. /var/cache/archiver)"
            )
    return None


def _absolute(path: Path) -> Path:
    """`path` made absolute and normalised (`..` folded) as written, symlinks left alone."""
    return Path(os.path.normpath(path.absolute()))


class StateConfig(_Strict):
    """Where the state lives: the SQLite file `path` (one host, the default), or the PostgreSQL
    database `url` (several workers on any hosts). The database password comes from at most one
    of password_file, password_env, or (under systemd's LoadCredential=) `credential`; none
    leaves it to libpq (~/.pgpass, a client certificate, peer/trust). TLS settings go to libpq
    unchanged."""

    path: Path = Path("/var/lib/archiver/ledger.sqlite3")
    work_dir: Path | None = None
    url: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    credential: str | None = None
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        None
    )
    sslrootcert: Path | None = None
    sslcert: Path | None = None
    sslkey: Path | None = None
    # Connections per process to PostgreSQL, besides one per cross-worker PBX request slot held.
    pool_size: Annotated[int, Field(ge=1, le=64)] = 4
    # How long a worker's claim on a recording lasts unless renewed (renewed every third of it
    # while the work goes on); a dead worker's recordings are taken over after this.
    lease_s: Annotated[float, Field(ge=5, le=86400)] = 300.0
    # How long a statement waits for the database to come back before the work is deferred.
    outage_s: Annotated[float, Field(ge=0, le=3600)] = 60.0

    @field_validator("url")
    @classmethod
    def _url_is_postgresql_without_password(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be postgresql://USER@HOST[:PORT]/DATABASE")
        try:
            secrets = postgres_url_secrets(value)
        except ValueError:
            raise ValueError(
                "is not a URL PostgreSQL can read: postgresql://USER@HOST[:PORT]/DATABASE"
            ) from None
        if secrets:
            raise ValueError(
                f"must not contain the password (libpq would read {', '.join(secrets)} from it): "
                "give it through password_file, password_env or credential"
            )
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> StateConfig:
        sources = [self.password_file, self.password_env, self.credential]
        if sum(source is not None for source in sources) > 1:
            raise ValueError("give at most one of password_file, password_env, credential")
        if self.url is None and any(source is not None for source in sources):
            raise ValueError("a database password is set but url is not")
        return self

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.url is None else "postgresql"

    def unverified_tls(self) -> str | None:
        """Why the connection to the database may go in clear or to an impostor, or None: libpq
        without `sslmode` uses `prefer` (TLS if offered, no certificate check, silent fallback
        to plaintext). None for SQLite, a loopback host or a Unix socket, or `sslmode` set to
        `verify-ca` or `verify-full` (here, in the URL or in $PGSSLMODE)."""
        if self.url is None:
            return None
        params = _conninfo(self.url)
        mode = self.sslmode or params.get("sslmode") or os.environ.get("PGSSLMODE") or ""
        if mode in ("verify-ca", "verify-full"):
            return None
        hosts = [h for h in (params.get("host") or os.environ.get("PGHOST") or "").split(",") if h]
        remote = [host for host in hosts if not _local_database_host(host)]
        if not remote:
            return None
        shown = mode or "prefer, libpq's default"
        return (
            f"[state] url: the connection to {', '.join(remote)} does not verify the server "
            f"(sslmode {shown}): the database password and the catalogue may cross the network "
            'in clear or to an impostor; set sslmode = "verify-full" and sslrootcert'
        )

    def tls_options(self) -> dict[str, str]:
        """The TLS settings given, as libpq connection parameters."""
        given = {
            "sslmode": self.sslmode,
            "sslrootcert": self.sslrootcert,
            "sslcert": self.sslcert,
            "sslkey": self.sslkey,
        }
        return {name: str(value) for name, value in given.items() if value is not None}

    @property
    def work_path(self) -> Path:
        """Where downloads and MP3s live until they are stored (each process in a folder of
        its own under it, see archiver.pipeline.workdir)."""
        return self.work_dir or self.path.parent / "work"

    @model_validator(mode="after")
    def _work_dir_is_safe(self) -> StateConfig:
        problem = work_dir_problem(self.work_path, self.path)
        if problem is not None:
            raise ValueError(problem)
        return self


class RetryConfig(_Strict):
    attempts: Annotated[int, Field(ge=1, le=100)] = 5
    timeout_s: Annotated[float, Field(gt=0, le=86400)] = 300.0
    wait_initial_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    wait_max_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    max_recording_attempts: Annotated[int, Field(ge=1, le=1000)] = 10


class DaemonConfig(_Strict):
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    # A PBX that refuses our credentials is asked again after a doubling pause, up to this.
    auth_backoff_max_s: Annotated[float, Field(ge=1, le=86400)] = 3600.0


@dataclass(frozen=True)
class PauseWindow:
    """Backfill pauses from `start` to `end`, local time, on the weekdays in `days` (0 = Monday,
    the day the window starts); an `end` not after `start` is on the next day."""

    days: frozenset[int]
    start: time
    end: time


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(
    r"(?:(?P<days>[A-Za-z]{3}(?:[-,][A-Za-z]{3})*)\s+)?(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})"
)


def parse_window(text: str) -> PauseWindow:
    """Parse "[DAYS ]HH:MM-HH:MM" (DAYS like Mon-Fri, Sat,Sun or Mon). Raise ValueError with
    the reason if it is not one."""
    match = _WINDOW_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a window: write HH:MM-HH:MM, optionally after weekdays "
            "(e.g. '08:00-19:00', 'Mon-Fri 08:00-19:00', 'Sat,Sun 10:00-14:00')"
        )
    days = _parse_weekdays(match["days"]) if match["days"] else frozenset(range(7))
    return PauseWindow(days, _parse_clock(match["start"]), _parse_clock(match["end"]))


def _parse_weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        for name in (first, last or first):
            if name not in _WEEKDAYS:
                raise ValueError(f"unknown weekday {name!r}: use {', '.join(_WEEKDAYS)}")
        lo, hi = _WEEKDAYS.index(first), _WEEKDAYS.index(last or first)
        days.update(range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(hi + 1)])
    return frozenset(days)


def _parse_clock(text: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 .. 23:59)")
    return time(hours, minutes)


class BackfillConfig(_Strict):
    """`archiver backfill` only; the live poll of `archiver run` never pauses."""

    # Windows, in each PBX's local time, in which a backfill starts no new recording, e.g.
    # ["Mon-Fri 08:00-19:00"]: the PBX is busy with the day's calls.
    pause_during: list[str] = []

    @field_validator("pause_during")
    @classmethod
    def _windows_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_window(text)
        return value

    @property
    def windows(self) -> tuple[PauseWindow, ...]:
        return tuple(parse_window(text) for text in self.pause_during)


class HttpConfig(_Strict):
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or int(port) > 65535:
                raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9780")
        return value


# `detail` is undocumented free text that ends up in a URL: a conservative allow-list.
DETAIL_PATTERN = r"^[A-Za-z0-9 _.,:@+-]{0,64}$"


class AutocallConfig(_Strict):
    """Defaults for `archiver call` (autocalls.cgi, pbx-api.md section 5)."""

    pbx: Annotated[str, Field(pattern=rf"^{_NAME_RE.pattern}$")] | None = None
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_interval_s: Annotated[int, Field(ge=1, le=86400)] = 10
    dp: Annotated[int, Field(ge=0, le=9999)] = 1
    dest: Annotated[int, Field(ge=0, le=9999)] = 1
    detail: Annotated[str, Field(pattern=DETAIL_PATTERN)] = ""
    match_window_s: Annotated[float, Field(ge=60, le=7 * 86400)] = 3600.0


class CallbacksConfig(_Strict):
    """The call-result receiver on the daemon's HTTP server (pbx-api.md section 6)."""

    enabled: bool = False
    path: Annotated[str, Field(pattern=r"^(/[A-Za-z0-9_.-]+)+$", max_length=128)] = (
        DEFAULT_CALLBACK_PATH
    )
    token: Annotated[SecretStr, Field(min_length=16, max_length=128)] | None = None
    # Under the shipped unit the TOML is readable by the service's dynamic user and so by
    # others: the token then comes from a systemd credential instead.
    token_credential: str | None = None
    per_source_rate_per_s: Annotated[float, Field(gt=0, le=10000)] = 5.0
    per_source_burst: Annotated[int, Field(ge=1, le=100000)] = 30
    global_rate_per_s: Annotated[float, Field(gt=0, le=100000)] = 50.0
    global_burst: Annotated[int, Field(ge=1, le=1000000)] = 300
    # When given, only these addresses or networks (the PBX's) may call back; others get 403.
    allowed_sources: Annotated[list[str], Field(max_length=64)] = []

    @field_validator("allowed_sources")
    @classmethod
    def _sources_are_networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or network") from None
        return values

    @field_validator("token")
    @classmethod
    def _token_is_url_safe(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", value.get_secret_value()):
            raise ValueError("must be URL-safe: A-Z a-z 0-9 _ - (e.g. `openssl rand -hex 24`)")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> CallbacksConfig:
        if self.token is not None and self.token_credential is not None:
            raise ValueError("give token or token_credential, not both")
        return self

    @property
    def has_token(self) -> bool:
        return self.token is not None or self.token_credential is not None


_USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def _check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8780")
    return value


WebRole = Literal["listener", "compliance", "admin"]
_USER_NAME = Annotated[str, Field(pattern=rf"^{_USERNAME_RE.pattern}$")]


class _Scoped(_Strict):
    """A role and a scope, as a user's or a group's table writes them."""

    role: WebRole | None = None
    # The PBXs whose calls are in the scope (left out: every PBX).
    pbx: list[str] | None = None
    # Extensions or ranges ("100-199", "105"): a call is in when its caller or callee is one.
    extensions: list[str] | None = None

    @model_validator(mode="after")
    def _ranges(self) -> _Scoped:
        try:
            Scope.parse(self.pbx, self.extensions)
        except InvalidScope as error:
            raise ValueError(error.reason) from None
        return self

    @property
    def scope(self) -> Scope | None:
        """The scope written here; None when neither pbx nor extensions is."""
        if self.pbx is None and self.extensions is None:
            return None
        return Scope.parse(self.pbx, self.extensions)


class WebUserConfig(_Scoped):
    """`[web.users.NAME]`: one user's role and scope (what is left out comes from the groups,
    then from `[web] default_role` and the whole archive)."""


class WebGroupConfig(_Scoped):
    """`[web.groups.NAME]`: a role and a scope for every member: local users named in `members`
    and directory users in one of `directory_groups` (group DNs or cns)."""

    members: list[_USER_NAME] = []
    directory_groups: list[Annotated[str, Field(min_length=1, max_length=512)]] = []


class WebLdapConfig(_Strict):
    """`[web.ldap]`: passwords checked by the organisation's directory (OpenLDAP, Active
    Directory). Only over TLS with the server's certificate verified: `ldaps://`, or `ldap://`
    with `start_tls = true`."""

    url: Annotated[str, Field(pattern=r"^ldaps?://[A-Za-z0-9.:\[\]-]+(:[0-9]{1,5})?/?$")]
    start_tls: bool = False
    # CA certificates that sign the directory's certificate (default: the system's).
    ca_file: Path | None = None
    # Either a DN template ("uid={username},ou=people,dc=example,dc=com") ...
    user_dn_template: str | None = None
    # ... or a search with a service account: base, filter ("(uid={username})"), bind DN and
    # its password from bind_password_file or bind_password_env.
    user_search_base: str | None = None
    user_search_filter: str = "(uid={username})"
    bind_dn: str | None = None
    bind_password_file: Path | None = None
    bind_password_env: str | None = None
    # Where the user's groups are found: entries under group_search_base matching this filter.
    group_search_base: str | None = None
    group_search_filter: str = "(member={user_dn})"
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    @model_validator(mode="after")
    def _safe(self) -> WebLdapConfig:
        if self.url.startswith("ldap://") and not self.start_tls:
            raise ValueError(
                "an ldap:// directory needs start_tls = true (or use ldaps://): passwords never"
                " cross the network in the clear"
            )
        if (self.user_dn_template is None) == (self.user_search_base is None):
            raise ValueError("give exactly one of user_dn_template and user_search_base")
        if self.user_dn_template is not None and "{username}" not in self.user_dn_template:
            raise ValueError("user_dn_template must contain {username}")
        if self.user_search_base is not None and (
            self.bind_dn is None
            or (self.bind_password_file is None) == (self.bind_password_env is None)
        ):
            raise ValueError(
                "user_search_base needs bind_dn and one of bind_password_file, bind_password_env"
            )
        return self


class WebConfig(_Strict):
    """`archiver web`: the archive's search page, player and JSON API (read-only on S3)."""

    listen: Annotated[str, AfterValidator(_check_listen)] = "127.0.0.1:8780"
    # Apache htpasswd format with bcrypt hashes (`htpasswd -B`, or `archiver web passwd NAME`).
    users_file: Path = Path("/etc/archiver/web-users")
    # Under systemd: read the users from this credential instead (LoadCredential=NAME:FILE).
    users_credential: str | None = None
    # Users who may open the status view (backlog, failures, archived per day).
    admins: list[Annotated[str, Field(pattern=rf"^{_USERNAME_RE.pattern}$")]] = []
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The session cookie's Secure flag: on under TLS; set true behind a TLS-terminating proxy.
    secure_cookies: bool | None = None
    session_ttl_s: Annotated[float, Field(ge=60, le=7 * 86400)] = 8 * 3600.0
    # What "today", "yesterday", "this month" mean on the search page and which days the status
    # chart counts (default: the first PBX's zone). Never which day a call belongs to: a date in
    # a search is the wall clock of each call's own PBX.
    timezone: Annotated[str, AfterValidator(_check_timezone)] | None = None
    # The country whose numbers are written nationally and whose prefixes (0, 90, +90, 0090 for
    # TR) a partial number may start with; a PBX's own `country` overrides it.
    country: Annotated[str, AfterValidator(_check_country)] = "TR"
    page_size: Annotated[int, Field(ge=5, le=500)] = 50
    # Login attempts allowed per (user name, address) pair within the window, then HTTP 429
    # for that pair only: nobody can lock a user out from elsewhere (issue 19).
    login_max_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    login_window_s: Annotated[float, Field(ge=1, le=86400)] = 900.0
    zip_max_files: Annotated[int, Field(ge=1, le=1000)] = 100
    # --- Limits under attack (issue 19) ---
    # Failed logins from one address across all user names (an office behind one NAT address).
    login_max_failures_per_address: Annotated[int, Field(ge=1, le=100_000)] = 30
    # Password checks waiting at once from one address (checks are served round-robin by
    # address); beyond, a login from there answers 503 with Retry-After, unchecked.
    login_max_pending: Annotated[int, Field(ge=1, le=10_000)] = 4
    # Zips streamed at once per user and in total; beyond, 429 (user) or 503 (total).
    zip_max_per_user: Annotated[int, Field(ge=1, le=100)] = 2
    zip_max_concurrent: Annotated[int, Field(ge=1, le=256)] = 8
    # Searches (page and API) running at once per user and in total; beyond, 429 or 503.
    search_max_per_user: Annotated[int, Field(ge=1, le=100)] = 2
    search_max_concurrent: Annotated[int, Field(ge=1, le=100)] = 3
    # A database statement of the web (a search) is cancelled after this: 503, try narrower.
    statement_timeout_s: Annotated[float, Field(ge=0.1, le=3600)] = 10.0
    # Reading a request: its headers within header_timeout_s of the connection or of the end
    # of the previous response (so an idle keep-alive connection closes after it too: aiohttp
    # has one timer for both), its body within body_timeout_s.
    header_timeout_s: Annotated[float, Field(ge=1, le=600)] = 10.0
    body_timeout_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    # Open connections in total and per client address (a trusted proxy's count only in the
    # total); beyond, the connection gets a 503 and is closed. See LimitNOFILE in the unit.
    max_connections: Annotated[int, Field(ge=8, le=100_000)] = 1024
    max_connections_per_address: Annotated[int, Field(ge=1, le=100_000)] = 64
    # Strict-Transport-Security max-age under TLS (or secure_cookies behind a proxy); 0: none.
    hsts_max_age_s: Annotated[int, Field(ge=0, le=2 * 365 * 86400)] = 365 * 86400
    # Proxies (exact addresses) whose X-Forwarded-For names the client in the access log.
    trusted_proxies: list[str] = []
    # The role of a user no [web.users.NAME] or group names (their scope: the whole archive).
    default_role: WebRole = "listener"
    users: dict[_USER_NAME, WebUserConfig] = {}
    groups: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], WebGroupConfig] = {}
    ldap: WebLdapConfig | None = None
    # A court export holds at most this many calls (more matches: refused with the count).
    # (At most 10,000: the catalogue counts matches up to that many.)
    max_export: Annotated[int, Field(ge=1, le=10_000)] = 1000

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        """`listen` as (host, port); an IPv6 host loses its brackets."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def users_path(self) -> Path:
        """The htpasswd file the server reads: the credential's copy under systemd when
        `users_credential` is set and systemd passed credentials, else `users_file`."""
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if self.users_credential is not None and directory:
            return Path(directory) / self.users_credential
        return self.users_file

    @property
    def cookies_secure(self) -> bool:
        return self.tls_cert is not None if self.secure_cookies is None else self.secure_cookies


_NUMBER_TEXT_RE = re.compile(r"\+?[0-9][0-9 ().-]{0,40}")


class RetentionRule(_Strict):
    """One `[[retention]]` table: which recordings it covers (any of `pbx`, `trunk`,
    `direction`, `numbers`; none: every recording, the catch-all) and how long they are kept.
    The first rule that matches a recording decides. `keep_days`: destroyed that many days after
    the call's start. `min_days`: an erasure request may not destroy it before that many days
    (a legal obligation to keep it, e.g. MiFID II's five years)."""

    name: Annotated[str, Field(pattern=rf"^{_NAME_RE.pattern}$")] | None = None
    pbx: Annotated[str, Field(pattern=rf"^{_NAME_RE.pattern}$")] | None = None
    trunk: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$")] | None = None
    direction: Literal["in", "out", "internal"] | None = None
    numbers: Annotated[list[str], Field(min_length=1, max_length=10_000)] | None = None
    keep_days: Annotated[int, Field(ge=1, le=36500)]
    min_days: Annotated[int, Field(ge=0, le=36500)] | None = None

    @field_validator("numbers")
    @classmethod
    def _numbers_are_numbers(cls, values: list[str] | None) -> list[str] | None:
        for value in values or []:
            if _NUMBER_TEXT_RE.fullmatch(value) is None:
                raise ValueError(
                    "numbers are digits, with an optional leading + and spaces, dashes, dots or "
                    'brackets between them (e.g. "+90 312 332 04 04")'
                )
        return values

    @model_validator(mode="after")
    def _min_within_keep(self) -> RetentionRule:
        if self.min_days is not None and self.min_days > self.keep_days:
            raise ValueError(
                f"min_days {self.min_days} is more than keep_days {self.keep_days}: a recording "
                "cannot have to be kept longer than it is kept"
            )
        return self

    @property
    def is_catch_all(self) -> bool:
        return (self.pbx, self.trunk, self.direction, self.numbers) == (None, None, None, None)

    def label(self, index: int) -> str:
        """How the destruction log and the reports name this rule: its `name`, else
        `retention[INDEX]` (its position in the file, from 0)."""
        return self.name or f"retention[{index}]"


class DestructionConfig(_Strict):
    """Periodic destruction (`archiver run`, `archiver retention run`)."""

    # `archiver run` destroys what its rules expired this often (KVKK: at most six months).
    every_days: Annotated[float, Field(gt=0, le=180)] = 1.0
    # The destruction log is kept at least this long (KVKK: three years); archiver itself never
    # deletes a row of it.
    log_keep_days: Annotated[int, Field(ge=1095, le=36500)] = 1095
    # A run that would destroy more than this stops, unless --yes --force are given (a rule
    # typed with one zero too few must not empty the archive overnight).
    max_per_run: Annotated[int, Field(ge=1, le=100_000_000)] = 10_000


class Config(_Strict):
    pbx: Annotated[list[PbxConfig], Field(min_length=1)]
    s3: S3Config
    poll: PollConfig = PollConfig()
    transcode: TranscodeConfig = TranscodeConfig()
    backfill: BackfillConfig = BackfillConfig()
    state: StateConfig = StateConfig()
    retry: RetryConfig = RetryConfig()
    daemon: DaemonConfig = DaemonConfig()
    http: HttpConfig = HttpConfig()
    autocall: AutocallConfig = AutocallConfig()
    callbacks: CallbacksConfig = CallbacksConfig()
    web: WebConfig = WebConfig()
    retention: list[RetentionRule] = []
    destruction: DestructionConfig = DestructionConfig()

    @field_validator("pbx", mode="before")
    @classmethod
    def _table_or_array(cls, value: Any) -> Any:
        # `[pbx]` (one PBX) and `[[pbx]]` (several) are both accepted.
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _pbx_names_unique(self) -> Config:
        names = [pbx.name for pbx in self.pbx]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"pbx names must be unique; repeated: {duplicates}")
        return self

    @model_validator(mode="after")
    def _callbacks_need_http_and_token(self) -> Config:
        if self.callbacks.enabled and (self.http.listen is None or not self.callbacks.has_token):
            raise ValueError(
                "callbacks.enabled needs http.listen and callbacks.token (or token_credential)"
            )
        if self.autocall.pbx is not None and self.autocall.pbx not in [p.name for p in self.pbx]:
            raise ValueError(f"autocall.pbx {self.autocall.pbx!r} is not a configured pbx name")
        return self

    @model_validator(mode="after")
    def _web_scopes_name_known_pbx(self) -> Config:
        known = {pbx.name for pbx in self.pbx}
        tables: list[tuple[str, str, _Scoped]] = [
            ("web.users", name, table) for name, table in self.web.users.items()
        ]
        tables += [("web.groups", name, table) for name, table in self.web.groups.items()]
        for where, name, table in tables:
            unknown = sorted(set(table.pbx or ()) - known)
            if unknown:
                raise ValueError(
                    f"[{where}.{name}] pbx names {unknown}, not configured pbx names"
                    f" ({sorted(known)})"
                )
        return self

    @model_validator(mode="after")
    def _retention_rules_cover_everything(self) -> Config:
        rules = self.retention
        if not rules:
            return self
        catch_alls = [n for n, rule in enumerate(rules) if rule.is_catch_all]
        if not catch_alls:
            raise ValueError(
                "[[retention]] rules need a catch-all: add a last [[retention]] with only "
                "keep_days (and min_days), for the recordings no other rule matches"
            )
        if catch_alls[0] != len(rules) - 1:
            raise ValueError(
                f"retention[{catch_alls[0]}] matches every recording, so the rules after it "
                "never apply (the first match wins): make the catch-all the last rule"
            )
        names = [pbx.name for pbx in self.pbx]
        for n, rule in enumerate(rules):
            if rule.pbx is not None and rule.pbx not in names:
                raise ValueError(f"retention[{n}].pbx {rule.pbx!r} is not a configured pbx name")
        labels = [rule.label(n) for n, rule in enumerate(rules)]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"retention rule names must be unique; repeated: {repeated}")
        return self

    @property
    def timezones(self) -> dict[str, ZoneInfo]:
        """Each configured PBX's time zone, by name."""
        return {pbx.name: ZoneInfo(pbx.timezone) for pbx in self.pbx}

    def pbx_named(self, name: str) -> PbxConfig:
        """The PBX called `name`. Raise `UnknownPbx` (saying which names exist) if none is."""
        for pbx in self.pbx:
            if pbx.name == name:
                return pbx
        raise UnknownPbx(name, [pbx.name for pbx in self.pbx])


def retention_warnings(cfg: Config) -> list[str]:
    """What `check-config` says about the lifecycle settings that are valid but worth a look."""
    if not cfg.retention:
        return [
            "no [[retention]] rule: recordings are kept forever (KVKK and GDPR ask for a period "
            "per purpose and periodic destruction; see config.example.toml)"
        ]
    warnings = []
    retain = cfg.s3.retain_days
    for n, rule in enumerate(cfg.retention):
        if retain is not None and retain > rule.keep_days:
            warnings.append(
                f"{rule.label(n)}: keep_days {rule.keep_days} is shorter than [s3] retain_days "
                f"{retain}: its recordings are destroyed only when the store's lock ends"
            )
    return warnings


def _dotted(location: tuple[str | int, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


# What a pattern means, in words: a regular expression is no message for an administrator.
_PATTERN_WORDS = {
    rf"^{_NAME_RE.pattern}$": "must be 1-32 of a-z 0-9 _ -, starting with a letter or digit",
    r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$": (
        "must be an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting "
        "and ending with a letter or digit"
    ),
    rf"^{_PREFIX_RE.pattern}$": "must be folder names of A-Z a-z 0-9 _ . + - joined by '/'",
    rf"^{_BITRATE_RE.pattern}$": 'must be kilobits per second like "32k"',
    r"^(/[A-Za-z0-9_.-]+)+$": 'must be a URL path like "/pbx/call-result"',
    DETAIL_PATTERN: "must be at most 64 of A-Z a-z 0-9 space _ . , : @ + -",
}
# Keys an administrator may try where they do not belong, and where they go instead.
_S3_CREDENTIAL_KEYS = frozenset(
    {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key",
     "secret_key", "access_key_id", "secret_access_key"}
)  # fmt: skip
_S3_CREDENTIALS_HINT = (
    "S3 credentials do not go in this file: boto3 finds them in the environment "
    "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), in a shared-credentials file "
    "(under systemd: /etc/archiver/s3-credentials, see README 'Install as a service') or from "
    "an instance role"
)


def _message(item: ErrorDetails) -> str:
    """One pydantic error in plain words. The input value is never shown: it may be a
    password."""
    kind, ctx, loc = item["type"], item.get("ctx") or {}, item["loc"]
    key = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        if key in _S3_CREDENTIAL_KEYS:
            return f"unknown key {key!r}: {_S3_CREDENTIALS_HINT}"
        close = difflib.get_close_matches(key, _known_keys(loc[:-1]), n=1, cutoff=0.6)
        if len(loc) == 1:
            return f"unknown table [{key}]" + (f"; did you mean [{close[0]}]?" if close else "")
        return f"unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    if kind == "missing":
        return "missing: this key is required"
    if kind == "string_type":
        return 'must be text: put it in quotes (e.g. password = "0123", not password = 0123)'
    if kind == "string_pattern_mismatch":
        return _PATTERN_WORDS.get(str(ctx.get("pattern")), "has characters that are not allowed")
    if kind in ("string_too_short", "too_short"):
        return f"must be at least {ctx.get('min_length')} characters long"
    if kind in ("string_too_long", "too_long"):
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number, without quotes"
    if kind in ("float_parsing", "float_type"):
        return "must be a number, without quotes"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false, without quotes"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    bounds = {"greater_than_equal": ("at least", "ge"), "less_than_equal": ("at most", "le"),
              "greater_than": ("more than", "gt"), "less_than": ("less than", "lt")}  # fmt: skip
    if kind in bounds:
        words, name = bounds[kind]
        return f"must be {words} {_number(ctx.get(name))}"
    if kind in ("dict_type", "model_type"):
        return "must be a table ([name] with keys under it)"
    if kind == "list_type":
        return "must be a list"
    return item["msg"].removeprefix("Value error, ")


def _number(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _known_keys(location: tuple[str | int, ...]) -> list[str]:
    """The keys the table at `location` accepts (for "did you mean")."""
    model: type[BaseModel] | None = Config
    for part in location:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = None if field is None else _model_in(field.annotation)
    return [] if model is None else list(model.model_fields)


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model class inside an annotation such as `list[PbxConfig]` or `S3Config`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\s\"]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"]+(?:\s*\.\s*[A-Za-z0-9_\-\"]+)*)\s*=")


def _toml_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Where each table and key starts in a TOML text, by its path (array tables by index),
    so that a problem can name its line. Plain tables and keys only: enough for this file."""
    lines: dict[tuple[str | int, ...], int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            names = tuple(part.strip().strip('"') for part in header.group(2).split("."))
            if header.group(1) == "[[":
                arrays[names] = arrays.get(names, -1) + 1
                table = (*names, arrays[names])
            else:
                table = names
            lines.setdefault(table, number)
            continue
        key = _KEY_RE.match(line)
        if key:
            names = tuple(part.strip().strip('"') for part in key.group(1).split("."))
            lines.setdefault((*table, *names), number)
    return lines


def _line_of(location: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> int:
    """The line of `location` or of the nearest table around it; 0 if unknown."""
    path = location
    while path:
        for candidate in (path, tuple(p for p in path if p != 0)):  # [pbx] is pbx[0]
            if candidate in lines:
                return lines[candidate]
        path = path[:-1]
    return 0


def _problems(error: ValidationError, source: str, text: str | None = None) -> list[str]:
    lines = _toml_lines(text) if text is not None else {}
    found = []
    for item in error.errors():
        line = _line_of(item["loc"], lines)
        where = f"{source}:{line}" if line else source
        found.append((line, f"{where}: at '{_dotted(item['loc'])}': {_message(item)}"))
    # In file order, as an editor shows them; problems without a line keep their order, first.
    return [problem for _, problem in sorted(found, key=lambda pair: pair[0])]


def parse_config(document: dict[str, Any], source: str, text: str | None = None) -> Config:
    """Given a parsed TOML document, return the validated `Config`.

    Raise `ConfigError` listing every problem in plain words, each prefixed with `source` (and
    its line in `text`, the TOML source, where it can be found) and its dotted path.
    """
    try:
        return Config.model_validate(document)
    except ValidationError as error:
        raise ConfigError(_problems(error, source, text)) from None


def load_config(path: Path) -> Config:
    """Read and validate the TOML file at `path`. Raise `ConfigError` on any problem."""
    try:
        text = path.read_bytes().decode("utf-8")
        document = tomllib.loads(text)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: invalid TOML: {error}{_toml_hint(error)}"]) from None
    return parse_config(document, str(path), text)


def _toml_hint(error: tomllib.TOMLDecodeError) -> str:
    # tomllib says "Invalid value" for a bare word such as `password = hunter2`.
    return ' (text values need quotes: key = "value")' if "Invalid value" in str(error) else ""


def config_path(explicit: Path | None) -> Path:
    """`--config` wins, then `$ARCHIVER_CONFIG`, then /etc/archiver/archiver.toml."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get("ARCHIVER_CONFIG")
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH
