"""The exit codes of every `archiver` command, in one place that imports nothing of ours (so a
subcommand's handler can use them without importing `cli`).

0 success; 1 bad configuration or usage; 2 the PBX or S3 could not be reached or refused our
credentials (one-shot commands); 3 the run finished but some recordings failed (`archiver status`
lists them); 4 the run was interrupted (a signal) before it finished its work, which it logged.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_CONFIG", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_UNREACHABLE"]

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 1
EXIT_UNREACHABLE: Final = 2
EXIT_SOME_FAILED: Final = 3
EXIT_INTERRUPTED: Final = 4
