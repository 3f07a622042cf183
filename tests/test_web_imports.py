"""The web part reads the state and S3 only: importing it (and the `web` command) never loads the
pipeline, the PBX client or the transcoder."""

from __future__ import annotations

import json
import subprocess
import sys


def test_web_never_imports_pipeline_pbx_or_transcoder() -> None:
    code = (
        "import sys, json; import archiver.web, archiver.commands.web;"
        " print(json.dumps(sorted(m for m in sys.modules if m.startswith('archiver.'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout)
    assert "archiver.web.audio" in loaded and "archiver.s3.store" in loaded
    banned = ("archiver.pipeline", "archiver.pbx", "archiver.lab", "archiver.commands.call")
    forbidden = [module for module in loaded if module.startswith(banned)]
    assert forbidden == []
