"""`archiver doctor` against a healthy set-up and against each failure it names: a wrong
password (401 and a strict CGI's login page), a wrong bucket (and `--create-bucket`), S3 down,
the PBX down, a bad certificate, commands answered empty, a bad configuration.

Real simulator over HTTP(S), real SeaweedFS, real ffmpeg. The healthy case runs the command as
an administrator would (a process, text and JSON); the failures run the same checks in-process.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import daemon_toml, free_port, run_archiver

from archiver.doctor import Check, run_doctor
from archiver.lab.postgres import LocalPostgres
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, start_simulator

PASSWORD = "Doctor-Secret-8080"
DAY = dt.date(2016, 11, 18)


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    sha256_colons: str


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1, as a PBX ships."""
    folder = tmp_path_factory.mktemp("cert")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pbx.local")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (folder / "c.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "c.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    digest = certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    return Cert(folder / "c.pem", folder / "c.key", digest)


@pytest.fixture
def env(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TEST_PBX_PASSWORD", PASSWORD)
    return {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}


async def _sim(**options: Any) -> tuple[Any, str]:
    values: dict[str, Any] = {"per_day": 3, "max_duration_s": 20, **options}
    sim = SimulatorOptions(username="admin", password=PASSWORD, start=DAY, **values)
    runner, port = await start_simulator(sim)
    return runner, sim.url(port)


@pytest.fixture
async def pbx_url(cert: Cert) -> AsyncIterator[str]:
    runner, url = await _sim(tls_cert=cert.cert, tls_key=cert.key)
    try:
        yield url
    finally:
        await runner.cleanup()


def _config(
    tmp_path: Path,
    url: str,
    seaweed: SeaweedS3,
    bucket: str,
    state_url: str | None = None,
    **tables: dict[str, object],
) -> Path:
    path = tmp_path / "archiver.toml"
    text = daemon_toml(url, seaweed, bucket, tmp_path / "state", **tables)
    if state_url is not None:  # a PostgreSQL state, waiting at most a second for it
        text = text.replace("[state]\n", f'[state]\nurl = "{state_url}"\noutage_s = 1\n')
    path.write_text(text, "utf-8")
    return path


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def _failed(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if check.status == "fail"]


def _pinned(cert: Cert) -> dict[str, object]:
    return {"tls_fingerprint": cert.sha256_colons}


def test_healthy_setup_passes_every_check(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str, cert: Cert,
    pbx_thread_url: str,
) -> None:  # fmt: skip
    config = _config(tmp_path, pbx_thread_url, seaweed, bucket, pbx=_pinned(cert))
    result = run_archiver("doctor", "--config", str(config), env=env)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "all 15 checks passed, 1 not applicable"
    assert not any(line.startswith("\u2717") for line in lines)
    for words in (
        "configuration",
        "ffmpeg",
        "pbx pbx: TLS",
        "pbx pbx: time zone",
        "s3: probe object",
        "s3: multipart upload",
        "state file",
        "work directory",
    ):
        assert any(line.startswith(f"\u2713 {words}") for line in lines), words
    assert f'tls_fingerprint = "{cert.sha256_colons}"' in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    assert env["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
    as_json = run_archiver("doctor", "--json", "--config", str(config), env=env)
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and document["ok"] is True
    assert {item["status"] for item in document["checks"]} <= {"pass", "skip"}
    # Only the callback URL (callbacks are off here) may be skipped.
    assert [i["name"] for i in document["checks"] if i["status"] == "skip"] == ["callback URL"]


@pytest.fixture
def pbx_thread_url(cert: Cert) -> Iterator[str]:
    """The TLS simulator in its own thread, for a doctor that runs as a separate process."""
    from archiver.lab.simulator import SimulatorThread

    options = SimulatorOptions(
        username="admin", password=PASSWORD, start=DAY, per_day=3, max_duration_s=20,
        tls_cert=cert.cert, tls_key=cert.key,
    )  # fmt: skip
    with SimulatorThread(options) as sim:
        yield sim.base_url


@pytest.mark.parametrize("strict", [False, True], ids=["http-401", "cgi-strict-login-page"])
async def test_wrong_password(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str, strict: bool
) -> None:
    runner, url = await _sim(cgi_strict=strict)
    env_password = os.environ["TEST_PBX_PASSWORD"]
    os.environ["TEST_PBX_PASSWORD"] = "not-the-password-1"
    try:
        checks = await run_doctor(_config(tmp_path, url, seaweed, bucket))
    finally:
        os.environ["TEST_PBX_PASSWORD"] = env_password
        await runner.cleanup()
    check = _by_name(checks)["pbx pbx: credentials accepted"]
    assert check.status == "fail" and "refused" in check.detail
    assert "TEST_PBX_PASSWORD" in check.fix
    assert _failed(checks) == ["pbx pbx: credentials accepted"]
    assert _by_name(checks)["pbx pbx: folder listing"].status == "skip"
    assert "not-the-password-1" not in repr(checks)


async def test_commands_answered_empty(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    runner, url = await _sim(cgi_strict=True, empty_commands="all")
    try:
        checks = await run_doctor(_config(tmp_path, url, seaweed, bucket))
    finally:
        await runner.cleanup()
    assert _failed(checks) == ["pbx pbx: folder listing"]
    assert "runs no command" in _by_name(checks)["pbx pbx: folder listing"].detail


async def test_pbx_down(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    checks = await run_doctor(_config(tmp_path, url, seaweed, bucket))
    assert _failed(checks) == ["pbx pbx: TCP connects"]
    assert "cannot connect" in _by_name(checks)["pbx pbx: TCP connects"].detail
    assert _by_name(checks)["pbx pbx: credentials accepted"].status == "skip"


async def test_bad_certificate_prints_the_line_that_pins_it(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str, cert: Cert,
    pbx_url: str,
) -> None:  # fmt: skip
    checks = await run_doctor(_config(tmp_path, pbx_url, seaweed, bucket))
    tls = _by_name(checks)["pbx pbx: TLS"]
    assert _failed(checks) == ["pbx pbx: TLS"]
    assert "not trusted" in tls.detail and "CN=pbx.local" in tls.detail
    assert f'tls_fingerprint = "{cert.sha256_colons}"' in tls.fix
    # The printed line, pasted into the configuration, fixes it.
    pinned = await run_doctor(_config(tmp_path, pbx_url, seaweed, bucket, pbx=_pinned(cert)))
    assert _failed(pinned) == []
    wrong: dict[str, object] = {"tls_fingerprint": "00" * 32}
    mismatch = await run_doctor(_config(tmp_path, pbx_url, seaweed, bucket, pbx=wrong))
    assert "does not match" in _by_name(mismatch)["pbx pbx: TLS"].detail


async def test_wrong_bucket_and_create_bucket(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3
) -> None:
    runner, url = await _sim()
    missing = f"doctor-{os.urandom(6).hex()}"
    try:
        config = _config(tmp_path, url, seaweed, missing)
        checks = await run_doctor(config)
        bucket = _by_name(checks)["s3: bucket"]
        assert _failed(checks) == ["s3: bucket"]
        assert "--create-bucket" in bucket.fix
        assert _by_name(checks)["s3: probe object"].status == "skip"
        created = await run_doctor(config, create_bucket=True)
        assert "created" in _by_name(created)["s3: bucket"].detail
        assert _failed(created) == []
        again = await run_doctor(config)
        assert _failed(again) == []
    finally:
        await runner.cleanup()
    assert seaweed.client().list_objects_v2(Bucket=missing).get("KeyCount", 0) == 0


async def test_s3_down(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    runner, url = await _sim()
    try:
        config = _config(
            tmp_path, url, seaweed, bucket, s3={"endpoint_url": f"http://127.0.0.1:{free_port()}"}
        )
        checks = await run_doctor(config)
    finally:
        await runner.cleanup()
    assert _failed(checks) == ["s3: bucket"]


async def test_bad_configuration_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[pbx]\nurl = "ftp://x"\nusername = ""\n[s3]\n', "utf-8")
    checks = await run_doctor(bad)
    assert len(checks) == 1 and checks[0].status == "fail"
    assert any("pbx[0].url" in problem for problem in checks[0].problems)
    assert any("s3.bucket" in problem for problem in checks[0].problems)


async def test_callbacks_enabled_but_nothing_answers(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    runner, url = await _sim()
    try:
        config = _config(
            tmp_path, url, seaweed, bucket,
            http={"listen": f"127.0.0.1:{free_port()}"},
            callbacks={"enabled": True, "token": "t" * 24},
        )  # fmt: skip
        checks = await run_doctor(config)
    finally:
        await runner.cleanup()
    callback = _by_name(checks)["callback URL"]
    assert _failed(checks) == ["callback URL"]
    assert "<token>" in callback.detail and "t" * 24 not in repr(checks)


async def test_callbacks_enabled_and_the_receiver_answers(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    from archiver.calls.callbacks import add_callback_routes
    from archiver.config import CallbacksConfig
    from archiver.service.http import Health, build_http_app, start_http
    from archiver.state import state_threads
    from archiver.state.calls import CallLog

    token = "r" * 24
    calls = CallLog.open(tmp_path / "calls.sqlite3")
    app = build_http_app(Health())
    callbacks = CallbacksConfig(enabled=True, token=token)  # type: ignore[arg-type]
    add_callback_routes(app, callbacks, calls, state_threads(calls.db))
    http_runner, port = await start_http(app, "127.0.0.1:0")
    runner, url = await _sim()
    try:
        config = _config(
            tmp_path, url, seaweed, bucket,
            http={"listen": f"127.0.0.1:{port}"}, callbacks={"enabled": True, "token": token},
        )  # fmt: skip
        checks = await run_doctor(config)
    finally:
        await runner.cleanup()
        await http_runner.cleanup()
    assert _failed(checks) == []
    assert "403 to a wrong token" in _by_name(checks)["callback URL"].detail
    assert calls.events() == []  # the doctor's request stored nothing
    calls.close()


async def test_a_postgresql_state_is_opened_or_named_as_down(
    tmp_path: Path, env: dict[str, str], seaweed: SeaweedS3, bucket: str, postgres: LocalPostgres
) -> None:
    runner, url = await _sim()
    down = f"postgresql://archiver@127.0.0.1:{free_port()}/archiver"
    try:
        up = _config(tmp_path, url, seaweed, bucket, state_url=postgres.create_database())
        checks = await run_doctor(up)
        assert _failed(checks) == []
        assert "reachable, schema up to date" in _by_name(checks)["state database"].detail
        gone = _config(tmp_path, url, seaweed, bucket, state_url=down)
        failing = await run_doctor(gone)
    finally:
        await runner.cleanup()
    assert _failed(failing) == ["state database"]
