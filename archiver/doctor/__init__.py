"""`archiver doctor`: the first command a new administrator runs and the one support asks for.

Each check prints ✓ or ✗ with the fix in one line (`--json` for tools); the command exits 0
only when no check failed (`-` marks one that does not apply, e.g. callbacks off). Checks: the
configuration (every problem, as check-config); ffmpeg (decodes GSM and WAV49, encodes MP3);
per PBX the address, TCP, TLS, credentials, folder listing, today's find and time zone; S3
credentials, bucket, a probe object and a multipart upload; the state file and the work
folder's room; the callback URL. Nothing secret is printed.
"""

from archiver.doctor.command import doctor
from archiver.doctor.result import Check, all_passed, render_json, render_text
from archiver.doctor.run import run_doctor

__all__ = ["Check", "all_passed", "doctor", "render_json", "render_text", "run_doctor"]
