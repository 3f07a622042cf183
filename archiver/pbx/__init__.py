"""The PBX client: the documented HTTP API (listings, downloads, automatic calls), the only place
that builds a `system_cmd.cgi` command or puts credentials into a URL.

Other parts import from here, not from `archiver.pbx.client`.
"""

from archiver.pbx.client import (
    Download,
    Listing,
    PbxAuthError,
    PbxClient,
    PbxError,
    PbxLoginPage,
    date_pattern,
    find_command,
    list_files_command,
)

__all__ = [
    "Download",
    "Listing",
    "PbxAuthError",
    "PbxClient",
    "PbxError",
    "PbxLoginPage",
    "date_pattern",
    "find_command",
    "list_files_command",
]
