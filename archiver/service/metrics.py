"""Prometheus metrics (prometheus-client) and the readiness they imply.

`Metrics` is the daemon's `Observer`: it counts what the daemon reports into its own
`CollectorRegistry` (not the process-global one, so tests and several instances never collide),
which /metrics serves. Labels are PBX names (allow-listed in config), stage names, outcomes and
fixed reason words only: never a URL, a path or anything a secret could hide in.
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from archiver.observe import FAILURE_REASONS, STAGES

__all__ = ["OUTCOMES", "DaemonFacts", "Metrics", "PbxProgress", "Sample"]

log = structlog.get_logger("archiver.metrics")

# (metric name ending in _total, labels, value): how other modules (callbacks) hand counts over
# without depending on prometheus-client.
Sample = tuple[str, dict[str, str], float]

# `taken_elsewhere`: another worker sharing the state holds it (or finished it first);
# `deferred`: the state database was unreachable, the next poll takes it again.
OUTCOMES = ("archived", "already_present", "failed", "empty", "taken_elsewhere", "deferred")
# Seconds: a listing or a short call takes well under a second; a long download or a retried
# stage can take minutes.
_LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# The stages that talk to S3: their results say whether S3 answers.
_S3_STAGES: Final = ("upload", "quarantine")
# The state is asked at most this often for its failure counts (a scrape every 15 s must not
# scan the ledger every 15 s), and given this long to answer before it counts as unavailable.
_STATE_REFRESH_S: Final = 30.0
_STATE_TIMEOUT_S: Final = 5.0
# Room a recording needs in the work folder: its source, and its MP3 (32 kbit/s of 128 kbit/s
# PCM, rounded up), as `archiver doctor` reckons it.
_MP3_SHARE: Final = 0.25
# The largest recording until one has been downloaded: an hour of 8 kHz 16-bit PCM.
_DEFAULT_LARGEST_BYTES: Final = 3600 * 16_000


@dataclass(frozen=True)
class DaemonFacts:
    """What `archiver run` tells its metrics beyond events: the poll interval, the work folder
    and how many recordings may be in it at once, and how to count the ledger's failures."""

    poll_interval_s: float
    work_dir: Path
    in_flight: int
    # (retryable, failed for good) in the whole state; raises if the state cannot be read.
    failed_counts: Callable[[], tuple[int, int]]


@dataclass
class PbxProgress:
    """What the service status and /readyz need per PBX (monotonic seconds)."""

    last_poll_ok: bool | None = None  # None: no listing finished yet
    last_success_s: float | None = None
    last_contact_s: float | None = None  # a successful listing or download
    last_listing_at: datetime | None = None  # wall clock, for the status line
    broken: bool = False  # the last listing was empty and the PBX could not show it was true
    credentials_refused: bool = False  # until the next accepted listing


@dataclass
class _Today:
    day: date = field(default_factory=lambda: datetime.now().astimezone().date())
    archived: int = 0

    def add(self) -> None:
        today = datetime.now().astimezone().date()
        if today != self.day:
            self.day, self.archived = today, 0
        self.archived += 1


class Metrics:
    """Counts the daemon's events (an `archiver.observe.Observer`) and renders them."""

    def __init__(self, pbx_names: Sequence[str], on_event: Callable[[], None] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self._on_event = on_event
        self.progress = {name: PbxProgress() for name in pbx_names}
        self.backlog = dict.fromkeys(pbx_names, 0)
        self.today = _Today()
        self.started_s = time.monotonic()  # the daemon's start (monotonic s)
        self._facts: DaemonFacts | None = None
        self._state_asked_s: float | None = None
        self._state_lock = asyncio.Lock()
        self._largest_bytes = 0
        r = self.registry
        self._discovered = Counter(
            "archiver_recordings_discovered", "Recordings seen for the first time.", ["pbx"],
            registry=r,
        )  # fmt: skip
        self._recordings = Counter(
            "archiver_recordings", "Recordings that ended, by outcome.", ["pbx", "outcome"],
            registry=r,
        )  # fmt: skip
        self._bytes_in = Counter(
            "archiver_source_bytes", "Bytes downloaded from the PBX.", ["pbx"], registry=r
        )
        self._bytes_out = Counter(
            "archiver_uploaded_bytes", "MP3 bytes uploaded to S3.", ["pbx"], registry=r
        )
        self._audio = Counter(
            "archiver_audio_seconds", "Seconds of audio archived.", ["pbx"], registry=r
        )
        self._transcoded = Counter(
            "archiver_transcode_audio_seconds",
            "Seconds of audio transcoded to MP3s that are now in S3 (uploaded or found there).",
            ["pbx"], registry=r,
        )  # fmt: skip
        r.register(_TranscodeCpuCollector())
        self._latency = Histogram(
            "archiver_stage_duration_seconds", "Time per stage, retries included.",
            ["stage", "pbx"], buckets=_LATENCY_BUCKETS_S, registry=r,
        )  # fmt: skip
        self._retries = Counter(
            "archiver_retries", "Retries of transient errors.", ["stage", "reason"], registry=r
        )
        self._polls = Counter(
            "archiver_listings", "Listings of one day, by result.", ["pbx", "result"], registry=r
        )
        self._broken = Counter(
            "archiver_listing_broken",
            "Empty listings not believed: the PBX could not show its commands run.", ["pbx"],
            registry=r,
        )  # fmt: skip
        self._backlog = Gauge(
            "archiver_backlog_recordings", "Recordings due and not yet done.", ["pbx"], registry=r
        )
        self._last_poll = Gauge(
            "archiver_last_successful_poll_timestamp_seconds",
            "Unix time of the last listing that succeeded.", ["pbx"], registry=r,
        )  # fmt: skip
        self._refused = Gauge(
            "archiver_pbx_credentials_refused",
            "1 while the PBX refuses the configured username/password.", ["pbx"], registry=r,
        )  # fmt: skip
        self._failures = Counter(
            "archiver_failures",
            "Recordings that failed (each attempt), by what went wrong.", ["pbx", "reason"],
            registry=r,
        )  # fmt: skip
        self._s3_up = Gauge(
            "archiver_s3_up",
            "1 while the last S3 stage (upload, quarantine) succeeded; 0 after one failed or "
            "is being retried.",
            registry=None,
        )  # fmt: skip
        self._state_up = Gauge(
            "archiver_state_up",
            "1 while the state (SQLite or PostgreSQL) answered its last question.",
            registry=None,
        )  # fmt: skip
        self._failed_recordings = Gauge(
            "archiver_failed_recordings",
            "Recordings failed in the whole state now: retryable (the next poll takes them "
            "again) or for_good (only `archiver retry --failed` does).",
            ["state"], registry=None,
        )  # fmt: skip
        self._poll_interval = Gauge(
            "archiver_poll_interval_seconds", "The configured [poll] interval_s.", registry=None
        )
        # Registered by `watch_daemon`: only a running daemon can say (a 0 before would alert).
        self._daemon_gauges = (
            self._s3_up, self._state_up, self._failed_recordings, self._poll_interval
        )  # fmt: skip
        r.register(_ProgressCollector(self))
        for name in pbx_names:  # every series exists from the start, at zero
            self._refused.labels(name)
            for reason in FAILURE_REASONS:
                self._failures.labels(name, reason)
            self._discovered.labels(name)
            for outcome in OUTCOMES:
                self._recordings.labels(name, outcome)
            counters = (
                self._bytes_in, self._bytes_out, self._audio, self._transcoded, self._backlog,
                self._broken,
            )  # fmt: skip
            for counter in counters:
                counter.labels(name)
            for stage in STAGES:
                self._latency.labels(stage, name)
            for result in ("ok", "failed"):
                self._polls.labels(name, result)

    def add_counters(self, source: Callable[[], Iterable[Sample]], doc: str) -> None:
        """Render the counters `source()` returns at every scrape, described by `doc`."""
        self.registry.register(_SampleCollector(source, doc))

    def watch_request_limits(self, source: Callable[[], Mapping[str, float]]) -> None:
        """Serve `archiver_pbx_request_limit{pbx}` from `source()` (PBX name to the adaptive
        limit of requests in flight) at every scrape."""
        self.registry.register(_LimitCollector(source))

    def watch_daemon(self, facts: DaemonFacts) -> None:
        """Serve what only a running daemon knows: its poll interval, its work folder's free
        room against what it needs, and (through `refresh`) the state's failure counts. S3
        answered before the daemon started (`store_ready`), so `archiver_s3_up` starts at 1."""
        self._facts = facts
        for gauge in self._daemon_gauges:
            self.registry.register(gauge)
        self._poll_interval.set(facts.poll_interval_s)
        self._s3_up.set(1)
        self._state_up.set(1)
        self.registry.register(_WorkDirCollector(self, facts))

    async def refresh(self) -> None:
        """Ask the state for its failure counts, at most every 30 s, in a thread, for at most
        5 s: `archiver_state_up` is 0 when it did not answer (a warning names why)."""
        facts = self._facts
        if facts is None:
            return
        async with self._state_lock:
            now_s = time.monotonic()
            if self._state_asked_s is not None and now_s - self._state_asked_s < _STATE_REFRESH_S:
                return
            self._state_asked_s = now_s
            try:
                retryable, for_good = await asyncio.wait_for(
                    asyncio.to_thread(facts.failed_counts), _STATE_TIMEOUT_S
                )
            except Exception as error:  # unreachable, locked, timed out: "could not tell"
                self._state_up.set(0)
                self._state_asked_s = None  # ask again at the next scrape
                log.warning("state_unavailable", error=type(error).__name__, where="metrics")
                return
        self._state_up.set(1)
        self._failed_recordings.labels("retryable").set(retryable)
        self._failed_recordings.labels("for_good").set(for_good)

    def work_dir_needed_bytes(self, in_flight: int) -> int:
        """Room for `in_flight` of the largest recording downloaded so far (an hour of PCM
        before the first), each with its MP3."""
        largest = self._largest_bytes or _DEFAULT_LARGEST_BYTES
        return int(in_flight * largest * (1 + _MP3_SHARE))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def _event(self) -> None:
        if self._on_event is not None:
            self._on_event()

    # -- Observer ---------------------------------------------------------------------------

    def listed(self, pbx: str, *, ok: bool, discovered: int, due: int) -> None:
        now_s = time.monotonic()
        progress = self.progress.setdefault(pbx, PbxProgress())
        progress.last_poll_ok = ok
        progress.broken = False
        progress.last_listing_at = datetime.now().astimezone()
        self._polls.labels(pbx, "ok" if ok else "failed").inc()
        if ok:
            progress.credentials_refused = False
            self._refused.labels(pbx).set(0)
            progress.last_success_s = progress.last_contact_s = now_s
            self._last_poll.labels(pbx).set(time.time())
            self._discovered.labels(pbx).inc(discovered)
            self._set_backlog(pbx, self.backlog.get(pbx, 0) + due)
        self._event()

    def listing_broken(self, pbx: str, reason: str) -> None:
        self.progress.setdefault(pbx, PbxProgress()).broken = True
        self._broken.labels(pbx).inc()
        self._event()

    def stage_done(self, stage: str, pbx: str, seconds: float, *, ok: bool) -> None:
        self._latency.labels(stage, pbx).observe(seconds)
        if stage in _S3_STAGES:
            self._s3_up.set(1 if ok else 0)
        self._event()

    def retrying(self, stage: str, pbx: str, reason: str) -> None:
        self._retries.labels(stage, reason).inc()
        if stage in _S3_STAGES:
            self._s3_up.set(0)
        self._event()

    def failed(self, pbx: str, reason: str, *, for_good: bool) -> None:
        self._failures.labels(pbx, reason).inc()
        self._state_asked_s = None  # the failure counts changed: ask at the next scrape
        self._event()

    def downloaded(self, pbx: str, size_bytes: int) -> None:
        self._bytes_in.labels(pbx).inc(size_bytes)
        self._largest_bytes = max(self._largest_bytes, size_bytes)
        self.progress.setdefault(pbx, PbxProgress()).last_contact_s = time.monotonic()

    def stored(self, pbx: str, *, mp3_bytes: int, audio_s: float, uploaded: bool) -> None:
        self._transcoded.labels(pbx).inc(audio_s)
        if uploaded:
            self._bytes_out.labels(pbx).inc(mp3_bytes)
            self._audio.labels(pbx).inc(audio_s)

    def finished(self, pbx: str, outcome: str) -> None:
        self._recordings.labels(pbx, outcome).inc()
        if outcome == "archived":
            self.today.add()
        elif outcome == "deferred":  # the state did not answer while this recording waited
            self._state_up.set(0)
            self._state_asked_s = None
        self._set_backlog(pbx, self.backlog.get(pbx, 0) - 1)
        self._event()

    def paused(self, pbx: str, until: datetime) -> None:
        return None  # only a backfill pauses, and a backfill serves no metrics

    def credentials_refused(self, pbx: str) -> None:
        self.progress.setdefault(pbx, PbxProgress()).credentials_refused = True
        self._refused.labels(pbx).set(1)
        self._event()

    def refused_pbxs(self) -> list[str]:
        """The PBXs refusing our credentials now, by name."""
        return sorted(name for name, p in self.progress.items() if p.credentials_refused)

    def _set_backlog(self, pbx: str, count: int) -> None:
        self.backlog[pbx] = max(count, 0)
        self._backlog.labels(pbx).set(self.backlog[pbx])

    # -- readiness --------------------------------------------------------------------------

    def not_ready(self, window_s: float) -> list[str]:
        """Why the daemon is not ready (empty: ready). Ready means every PBX's last listing
        succeeded and the PBX answered (a listing or a download) within `window_s`."""
        now_s = time.monotonic()
        problems = []
        for name, progress in self.progress.items():
            if progress.credentials_refused:
                problems.append(f"{name}: credentials refused (fix the username/password)")
            elif progress.last_poll_ok is None:
                problems.append(f"{name}: no listing yet")
            elif progress.broken:
                problems.append(f"{name}: listing looks broken (empty, and the PBX could not "
                                "show that its commands run)")  # fmt: skip
            elif not progress.last_poll_ok:
                problems.append(f"{name}: last listing failed")
            elif progress.last_contact_s is None or now_s - progress.last_contact_s > window_s:
                problems.append(f"{name}: no successful contact for over {window_s:.0f} s")
        return problems


class _ProgressCollector(Collector):
    """Per PBX, read at scrape time: `archiver_listing_age_seconds` (since its last successful
    listing, or since the daemon started if none has succeeded yet: it grows while nothing
    succeeds) and `archiver_listing_suspect` (1 while its last listing was empty and the PBX
    could not show that its commands run)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now_s = time.monotonic()
        age = GaugeMetricFamily(
            "archiver_listing_age_seconds",
            "Seconds since the PBX last answered a listing (since the start if it has not yet).",
            labels=["pbx"],
        )
        suspect = GaugeMetricFamily(
            "archiver_listing_suspect",
            "1 while the last listing was empty and the PBX could not show its commands run.",
            labels=["pbx"],
        )
        for pbx, progress in sorted(self._metrics.progress.items()):
            since = progress.last_success_s or self._metrics.started_s
            age.add_metric([pbx], max(now_s - since, 0.0))
            suspect.add_metric([pbx], 1 if progress.broken else 0)
        yield age
        yield suspect

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self.collect()


class _WorkDirCollector(Collector):
    """`archiver_work_dir_free_bytes` (statvfs of the work folder, at scrape time) and
    `archiver_work_dir_needed_bytes` (in flight x the largest recording so far, with its MP3)."""

    def __init__(self, metrics: Metrics, facts: DaemonFacts) -> None:
        self._metrics = metrics
        self._facts = facts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            free = float(shutil.disk_usage(self._facts.work_dir).free)
        except OSError:  # the folder vanished: no room at all, and the alert says so
            free = 0.0
        yield GaugeMetricFamily(
            "archiver_work_dir_free_bytes", "Free bytes on the work folder's file system.",
            value=free,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "archiver_work_dir_needed_bytes",
            "Bytes the work folder needs: recordings in flight x the largest so far, with MP3s.",
            value=self._metrics.work_dir_needed_bytes(self._facts.in_flight),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self.collect()


class _TranscodeCpuCollector(Collector):
    """`archiver_transcode_cpu_seconds_total`: the CPU (user + system) of every ffmpeg this
    process has run and reaped, read from getrusage(RUSAGE_CHILDREN) at scrape time. ffmpeg is
    the only child the daemon starts, and it spends ~94 % of the transcoding CPU (bench/); the
    rest (the MP3 check, hashing) is in the daemon's own process CPU. Divided by
    `archiver_transcode_audio_seconds_total` it sizes a host: CPU seconds per audio hour."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        yield CounterMetricFamily(
            "archiver_transcode_cpu_seconds",
            "CPU seconds spent by the transcoding ffmpeg processes.",
            value=usage.ru_utime + usage.ru_stime,
        )

    def describe(self) -> Iterator[CounterMetricFamily]:
        return self.collect()


class _LimitCollector(Collector):
    """`archiver_pbx_request_limit{pbx}`: the adaptive limit of requests in flight per PBX."""

    def __init__(self, source: Callable[[], Mapping[str, float]]) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "archiver_pbx_request_limit",
            "Requests allowed in flight to the PBX now (adapts to its answer time).",
            labels=["pbx"],
        )
        for pbx, limit in self._source().items():
            family.add_metric([pbx], limit)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class _SampleCollector(Collector):
    """Counters read from a `Sample` source at scrape time."""

    def __init__(self, source: Callable[[], Iterable[Sample]], doc: str) -> None:
        self._source = source
        self._doc = doc

    def collect(self) -> Iterator[CounterMetricFamily]:
        families: dict[str, CounterMetricFamily] = {}
        for name, labels, value in self._source():
            family = families.get(name)
            if family is None:
                family = CounterMetricFamily(
                    name.removesuffix("_total"), self._doc, labels=list(labels)
                )
                families[name] = family
            family.add_metric(list(labels.values()), value)
        yield from families.values()

    def describe(self) -> Iterator[CounterMetricFamily]:
        return iter(())  # the names are known only at scrape time
