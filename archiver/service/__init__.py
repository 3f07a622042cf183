"""Running under systemd: sd_notify, the HTTP server (/healthz, /readyz, /metrics), metrics
and the start-up checks."""
