"""The lifecycle, shown: a PBX simulator, SeaweedFS and moto (both with an Object Lock bucket), a
small archive of calls of several ages, then the commands an administrator runs, each printed
with its output: `doctor` (its Object Lock line) on SeaweedFS and on moto, `hold add`,
`retention run --dry-run`, `retention run --yes`, `retention report`, and an erasure that keeps
a held call. Everything on 127.0.0.1, in a temporary folder, stopped at the end.

    python -m archiver.lab.retention_demo
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from moto.server import ThreadedMotoServer

from archiver.config import load_config
from archiver.lab.chaos_retention import archive_one, call_recording
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread
from archiver.logs import configure_logging
from archiver.s3 import S3Store
from archiver.state import open_state

__all__ = ["main"]

_PASSWORD = "Demo-Pbx-Password-1"  # noqa: S105 - the local simulator's
_PERSON = "905412535962"


def _config(folder: Path, name: str, pbx_url: str, endpoint: str, bucket: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f"""[pbx]
url = "{pbx_url}"
username = "admin"
password_env = "DEMO_PBX_PASSWORD"

[s3]
bucket = "{bucket}"
endpoint_url = "{endpoint}"
region = "us-east-1"
addressing_style = "path"
object_lock = true
retain_mode = "GOVERNANCE"

[state]
path = "{folder / name / "ledger.sqlite3"}"

[[retention]]
name = "trading-desk"
trunk = "trunk-sip-trading"
keep_days = 2555
min_days = 1825

[[retention]]
keep_days = 365
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def _show(env: dict[str, str], *args: str) -> None:
    print(f"$ archiver {' '.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    sys.stdout.write(result.stdout)
    if result.stderr.strip():
        sys.stdout.write(result.stderr)
    print(f"(exit {result.returncode})\n", flush=True)


def main() -> int:
    configure_logging(level="warning", stream=sys.stderr)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="retention-demo-")))
        seaweed = stack.enter_context(SeaweedS3())
        moto_port = _free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        sim = stack.enter_context(
            SimulatorThread(SimulatorOptions(username="admin", password=_PASSWORD, per_day=2))
        )
        env = {**os.environ, "DEMO_PBX_PASSWORD": _PASSWORD, "AWS_ACCESS_KEY_ID":
               seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
               "COLUMNS": "120"}  # fmt: skip
        os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "DEMO_"))})
        bucket = f"calls-{uuid.uuid4().hex[:8]}"
        seaweed.create_bucket(bucket, object_lock=True)
        on_seaweed = _config(folder, "seaweed", sim.base_url, seaweed.endpoint_url, bucket)
        on_moto = _config(folder, "moto", sim.base_url, f"http://127.0.0.1:{moto_port}", bucket)
        S3Store(load_config(on_moto).s3).create_bucket()
        print(f"# {datetime.now(UTC).isoformat(timespec='seconds')}, load average "
              f"{os.getloadavg()[0]:.2f}\n")  # fmt: skip
        held_key = ""
        for path in (on_seaweed, on_moto):
            cfg = load_config(path)
            rng = random.Random(20)  # noqa: S311 - demo data, the same calls in both stores
            with contextlib.closing(open_state(cfg)) as state:
                store = S3Store(cfg.s3)
                ages = [(400, "903123320404"), (420, _PERSON), (380, "902126942656"),
                        (30, _PERSON), (12, "903128685215")]  # fmt: skip
                for n, (days, callee) in enumerate(ages):
                    item = archive_one(state, cfg, store, call_recording(rng, n, days, callee),
                                       folder)  # fmt: skip
                    if n == 1 and not held_key:
                        held_key = item.key  # the person's call under dispute (SeaweedFS's)
                trading = call_recording(rng, 9, 40, _PERSON, trunk="trunk-sip-trading")
                archive_one(state, cfg, store, trading, folder)
                # An automatic call placed to the person, in the call log.
                state.calls.begin("pbx", _PERSON, {"telefon": "05412535962", "dp": "1"})
        _show(env, "doctor", "--config", str(on_seaweed))
        _show(env, "doctor", "--config", str(on_moto))
        config = str(on_seaweed)
        _show(env, "hold", "add", "--config", config, "--case", "DAVA-2026-114", "--key",
              held_key, "--note", "customer dispute")  # fmt: skip
        _show(env, "hold", "list", "--config", config)
        _show(env, "retention", "run", "--config", config, "--dry-run")
        _show(env, "retention", "run", "--config", config, "--yes")
        today = datetime.now(ZoneInfo("Europe/Istanbul")).date().isoformat()
        _show(env, "retention", "report", "--config", config, "--from", today, "--to", today)
        _show(env, "erase", "--config", config, "--number", "+90 541 253 59 62", "--ref",
              "KVKK-2026-31", "--dry-run")  # fmt: skip
        _show(env, "erase", "--config", config, "--number", "+90 541 253 59 62", "--ref",
              "KVKK-2026-31", "--yes")  # fmt: skip
        _show(env, "retention", "report", "--config", config, "--from", today, "--to", today)
        _show(env, "calls", "--config", config)
        _show(env, "status", "--config", config)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


if __name__ == "__main__":
    sys.exit(main())
