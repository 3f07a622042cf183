"""The README's install section, followed as written into a temporary root (issue 12 item 6).

The shell lines of steps 2-4 (code, configuration, secrets) run as they are, with
`/opt/archiver` and `/etc/archiver` moved under the root, the clone taken from this checkout, and
`editor` replaced by the edits an admin would make. Lines that change the machine itself
(`apt-get`) are left out. The last command of step 4 is `check-config`: it must say OK.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SKIPPED = ("apt-get ",)  # installs Debian packages on the machine itself


def _install_blocks(readme: str) -> list[list[str]]:
    """The ```sh blocks of steps 2-4 of "Install as a service", as lists of command lines
    (comment lines left out)."""
    section = readme.split("## Install as a service", 1)[1].split("\n## ", 1)[0]
    steps = re.split(r"\n(?=\d+\. )", section)
    blocks = []
    for step in steps:
        if re.match(r"[234]\. ", step):
            for block in re.findall(r"```sh\n(.*?)```", step, flags=re.S):
                lines = [line.strip() for line in block.splitlines()]
                blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def _without_comment(line: str) -> str:
    return shlex.join(shlex.split(line, comments=True))


def _edit(path: Path, root: Path) -> None:
    """What the admin does in `editor`: a URL and credentials, the state under the root."""
    if path.name == "archiver.toml":
        text = path.read_text("utf-8")
        for folder in ("/var/lib/archiver", "/var/cache/archiver"):
            text = text.replace(f'"{folder}', f'"{root}{folder}')
        text = text.replace('url = "https://192.0.2.10:9999"', 'url = "https://127.0.0.1:9999"')
        path.write_text(text, "utf-8")
    elif path.name == "pbx-password":
        path.write_text("Install-Secret-77\n", "utf-8")
    elif path.name == "s3-credentials":
        path.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n", "utf-8")
    else:
        raise AssertionError(f"the README edits a file this test does not know: {path}")


def test_readme_install_steps_work_into_a_temporary_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    blocks = _install_blocks((ROOT / "README.md").read_text("utf-8"))
    assert len(blocks) == 3, blocks
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    ran: list[subprocess.CompletedProcess[str]] = []
    for line in (line for block in blocks for line in block):
        if line.startswith(_SKIPPED):
            continue
        command = _without_comment(line)
        for prefix in ("/opt/archiver", "/etc/archiver"):
            command = command.replace(prefix, f"{root}{prefix}")
        command = command.replace("ARCHIVER_REPOSITORY", shlex.quote(str(ROOT)))
        if command.startswith("editor "):
            _edit(Path(shlex.split(command)[1]), root)
            continue
        done = subprocess.run(
            ["bash", "-euc", command], env=env, capture_output=True, text=True, timeout=600,
            check=False, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        ran.append(done)
    version = next(r.stdout for r in ran if "--version" in r.args[-1])
    # From git (hatch-vcs): a tag's version, or 0.0.1.devN+gHASH without tags; never 0.1.0.
    assert re.fullmatch(r"archiver \d+\.\d+\.\d+(\.dev\d+\+g[0-9a-f]+(\.d\d{8})?)?\n", version)
    assert ran[-1].args[-1].endswith(f"check-config --config {root}/etc/archiver/archiver.toml")
    assert ran[-1].stdout.startswith(f"{root}/etc/archiver/archiver.toml: OK"), ran[-1]
    assert (root / "etc/archiver/pbx-password").stat().st_mode & 0o777 == 0o600
