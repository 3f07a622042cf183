"""Running under systemd: sd_notify, the HTTP server (/healthz, /readyz, /metrics), metrics
the start-up checks and the progress bar.

Other parts import from here, not from the modules inside.
"""

from archiver.notify import Notifier, watchdog_interval_s
from archiver.service.http import (
    Health,
    ListenError,
    add_metrics_routes,
    build_http_app,
    ready_window_s,
    start_http,
)
from archiver.service.metrics import DaemonFacts, Metrics
from archiver.service.progress import ProgressBar, ProgressLog, log_progress
from archiver.service.startup import Service, check_pbxs

__all__ = [
    "DaemonFacts",
    "Health",
    "ListenError",
    "Metrics",
    "Notifier",
    "ProgressBar",
    "ProgressLog",
    "Service",
    "add_metrics_routes",
    "build_http_app",
    "check_pbxs",
    "log_progress",
    "ready_window_s",
    "start_http",
    "watchdog_interval_s",
]
