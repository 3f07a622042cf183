"""`scripts/demo --web` as a newcomer runs it: the demo days archived, then the archive served
with a printed demo user until Ctrl-C; a call found by number and played; everything stopped."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path


def _get(url: str, user: str, password: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310  # our http:// server
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return response.status, dict(response.headers), response.read()


def test_demo_web_serves_the_archived_days_until_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "archiver.lab.demo", "--data", str(tmp_path / "demo"),
         "--per-day", "2", "--web", "--web-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    printed: list[str] = []
    try:
        for line in process.stdout:
            printed.append(line)
            if "the archive is at" in line:
                break
        found = re.search(r"(http://127\.0\.0\.1:[0-9]+)/ +user (\S+), password (\S+)", printed[-1])
        assert found is not None, "".join(printed)
        url, user, password = found.groups()
        status, _, body = _get(f"{url}/api/recordings?number=0312%20332%2004%2004", user, password)
        answer = json.loads(body)
        assert status == 200 and answer["total"] >= 1
        item = answer["items"][0]
        assert "903123320404" in (item["caller"], item["callee"])
        status, headers, audio = _get(url + item["audio_url"], user, password, Range="bytes=0-")
        assert status == 206 and headers["Content-Type"] == "audio/mpeg"
        assert len(audio) == item["size_bytes"]
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        code = process.wait(timeout=60)
    assert code == 0, "".join(printed)
