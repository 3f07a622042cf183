"""The PBX client: the documented HTTP API (listings, downloads, automatic calls), the only place
that builds a `system_cmd.cgi` command or puts credentials into a URL."""
