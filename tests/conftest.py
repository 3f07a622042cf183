"""Shared fixtures: one real SeaweedFS S3 server and one real PostgreSQL server per test session,
a fresh bucket or database per test."""

from __future__ import annotations

import inspect
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support import free_port, state_config

from archiver.config import Config, S3Config
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.s3 import S3Store
from archiver.state.api import State, open_state

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page
    from web_support import Site


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 server on 127.0.0.1 (free ports, temporary data dir), stopped at the end."""
    with SeaweedS3() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server on 127.0.0.1 (a free port, a temporary folder), stopped by its PID at
    the end of the session."""
    with LocalPostgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def state_cfg(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """A config whose state is a new SQLite file or a new PostgreSQL database (the session's
    server): every test using it runs on both backends."""
    if request.param == "sqlite":
        return state_config({"path": str(tmp_path / "state" / "ledger.sqlite3")})
    server: LocalPostgres = request.getfixturevalue("postgres")
    return state_config({"url": server.create_database(), "outage_s": 5})


@pytest.fixture
def state(state_cfg: Config) -> Iterator[State]:
    """The opened state of `state_cfg` (both backends), closed after the test."""
    opened = open_state(state_cfg)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def bucket(seaweed: SeaweedS3) -> str:
    """A new, empty, uniquely named bucket on the session's SeaweedFS."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    seaweed.create_bucket(name)
    return name


@pytest.fixture
def s3_env(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """SeaweedFS's credentials in the environment, for code that uses boto3's default chain.

    Nothing from the host's AWS set-up can leak in, and the chain cannot fall through to the
    instance-metadata endpoint (no traffic may leave the machine). The endpoint is *not* set:
    code under test must take it from its configuration.
    """
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_config(seaweed: SeaweedS3, bucket: str) -> S3Config:
    """An `S3Config` for the test's bucket (use with `s3_env` for the credentials)."""
    return S3Config(
        bucket=bucket,
        endpoint_url=seaweed.endpoint_url,
        region="us-east-1",
        addressing_style="path",
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server in this process on 127.0.0.1 (a free port): the store that enforces
    Object Lock like AWS (a delete of a held or retained version is refused), for the retention
    tests. It accepts any credentials."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["seaweed", "moto"])
def locked_s3(request: pytest.FixtureRequest, s3_env: dict[str, str]) -> S3Config:
    """An `S3Config` (credentials from `s3_env`) for a new bucket created with Object Lock
    enabled, on SeaweedFS and on moto: every test using it runs on both stores."""
    name = f"lock-{uuid.uuid4().hex[:16]}"
    if request.param == "seaweed":
        server: SeaweedS3 = request.getfixturevalue("seaweed")
        server.create_bucket(name, object_lock=True)
        endpoint = server.endpoint_url
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
    cfg = S3Config(
        bucket=name,
        endpoint_url=endpoint,
        region="us-east-1",
        addressing_style="path",
        object_lock=True,
    )
    if request.param == "moto":
        S3Store(cfg).create_bucket()
    return cfg


# `scripts/test --quick` runs the tests marked neither `servers` nor `slow` (`-m quick`):
# no SeaweedFS, PostgreSQL, browser, simulator or archiver subprocess. A test is marked
# `servers` here, at collection, if it asks for a server fixture (directly or through another
# fixture), runs on the PostgreSQL side of `state_cfg`, or its own code (or its module's helpers
# it names) starts one; a test that takes its time without one is marked `slow` in its module.
_SERVER_FIXTURES = frozenset(
    {
        "seaweed", "postgres", "bucket", "s3_env", "s3_config", "moto_endpoint", "locked_s3",
        "browser", "page",
    }
)  # fmt: skip
_SERVER_WORDS = (
    "SimulatorThread", "start_simulator", "start_rig", "make_rig", "run_archiver", "LocalPostgres",
    "SeaweedS3", "subprocess", "chromium", "playwright", "browser", "start_http", "Popen",
    "_receiver(", "_sim(", "web_site", "TestServer", "daemon_toml",
)  # fmt: skip


@pytest.fixture(scope="module")
def site(archived: Config, seaweed: SeaweedS3) -> Iterator[Site]:
    """`archiver web` serving the test module's `archived` configuration (a web test module
    defines `archived`: the calls it archives and its users), for the whole module."""
    from web_support import s3_environment, serving

    with s3_environment(seaweed), serving(archived) as running_site:
        yield running_site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (never a downloaded browser), one per test module;
    autoplay allowed so that Play needs no gesture."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "chromium missing: scripts/bootstrap installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh desktop page (1280x860, en-GB, downloads accepted) in a context of its own."""
    context = browser.new_context(
        accept_downloads=True, locale="en-GB", viewport={"width": 1280, "height": 860}
    )
    opened = context.new_page()
    yield opened
    context.close()


def _starts_servers(item: pytest.Item) -> bool:
    if _SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgresql" in callspec.params.values():
        return True
    function = getattr(item, "function", None)
    if function is None:
        return True
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return True
    return any(word in source for word in _SERVER_WORDS)


# Tests that take seconds of CPU without a server (timing checks, property tests, whole batches
# through ffmpeg): the full run has them, the quick loop leaves them out.
_SLOW = frozenset(
    {
        "tests/test_web_attacks.py::test_a_check_takes_as_long_whatever_the_name",
        "tests/test_retention_config.py::test_check_config_warns_without_rules_and_passes",
        "tests/test_retention_config.py::test_check_config_names_the_line_of_a_bad_rule",
        "tests/test_names.py::test_accepted_names_carry_nothing_unsafe",
        "tests/test_asterisk_audio.py::test_all_of_them_in_one_batch",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("[")[0] in _SLOW:
            item.add_marker(pytest.mark.slow)
        if _starts_servers(item):
            item.add_marker(pytest.mark.servers)
        elif item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.quick)
