"""TLS to the PBX, against the simulator serving certificates made here: verified by default, a
private CA (`ca_file`), a pinned self-signed certificate (`tls_fingerprint`), and `verify_tls =
false` (works, with a warning at every start)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import daemon_toml, json_events, run_archiver

from archiver.config import PbxConfig
from archiver.lab.seaweed import SeaweedS3
from archiver.lab.simulator import SimulatorOptions, SimulatorThread, start_simulator
from archiver.pbx.client import PbxClient, PbxError

PASSWORD = "Tls-Secret-55120"
DAY = date(2016, 11, 18)


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path
    sha256_hex: str  # of the DER certificate, as `openssl x509 -fingerprint -sha256` shows it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey],
    *, ca: bool,
) -> x509.Certificate:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Key identifiers: Python 3.13 verifies with VERIFY_X509_STRICT, which wants both (as any
        # real CA's certificates have them).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    )
    if not ca:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    else:
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer[1], hashes.SHA256())


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> ServerCert:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return ServerCert(cert_path, key_path, hashlib.sha256(der).hexdigest())


@dataclass(frozen=True)
class Certs:
    self_signed: ServerCert  # the usual PBX: a certificate that signed itself
    ca_signed: ServerCert  # a site with its own CA
    ca_file: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("certs")
    pbx_key = ec.generate_private_key(ec.SECP256R1())
    self_signed = _issue("pbx.local", pbx_key, ("pbx.local", pbx_key), ca=False)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("Test Site CA", ca_key, ("Test Site CA", ca_key), ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _issue("pbx.site", leaf_key, ("Test Site CA", ca_key), ca=False)
    ca_path = folder / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Certs(
        self_signed=_write(folder, "self", self_signed, pbx_key),
        ca_signed=_write(folder, "leaf", leaf, leaf_key),
        ca_file=ca_path,
    )


def _options(cert: ServerCert) -> SimulatorOptions:
    return SimulatorOptions(
        username="admin", password=PASSWORD, seed=2, start=DAY, per_day=3, max_duration_s=20,
        tls_cert=cert.cert, tls_key=cert.key,
    )  # fmt: skip


@pytest.fixture
async def tls_url(request: pytest.FixtureRequest, certs: Certs) -> AsyncIterator[str]:
    cert = certs.self_signed if request.param == "self" else certs.ca_signed
    runner, port = await start_simulator(_options(cert))
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _find(url: str, **tls: object) -> int:
    cfg = PbxConfig.model_validate(
        {"url": url, "username": "admin", "password": PASSWORD, "request_timeout_s": 5, **tls}
    )
    client = PbxClient(cfg, PASSWORD)
    try:
        listing = await client.find("20161118-")
    finally:
        await client.close()
    return len(listing.lines)


@pytest.mark.parametrize("tls_url", ["self"], indirect=True)
async def test_self_signed_fails_default_verification(tls_url: str) -> None:
    with pytest.raises(PbxError) as caught:
        await _find(tls_url)
    assert caught.value.reason == (
        "listing: PBX 'pbx': TLS certificate not trusted (set ca_file or tls_fingerprint)"
    )
    assert not caught.value.transient  # retrying cannot make the certificate trusted


@pytest.mark.parametrize("tls_url", ["ca"], indirect=True)
async def test_private_ca_file(tls_url: str, certs: Certs) -> None:
    assert await _find(tls_url, ca_file=str(certs.ca_file)) > 0
    with pytest.raises(PbxError, match="not trusted"):
        await _find(tls_url)  # the same server without the CA


@pytest.mark.parametrize("tls_url", ["self"], indirect=True)
async def test_pinned_fingerprint(tls_url: str, certs: Certs) -> None:
    digest = certs.self_signed.sha256_hex
    assert await _find(tls_url, tls_fingerprint=digest) > 0
    # As openssl prints it: upper case, colon-separated.
    colons = ":".join(digest[i : i + 2] for i in range(0, 64, 2)).upper()
    assert await _find(tls_url, tls_fingerprint=colons) > 0


@pytest.mark.parametrize("tls_url", ["self"], indirect=True)
async def test_fingerprint_mismatch_is_a_clear_error(tls_url: str, certs: Certs) -> None:
    other = certs.ca_signed.sha256_hex  # a real fingerprint, of another certificate
    with pytest.raises(PbxError) as caught:
        await _find(tls_url, tls_fingerprint=other)
    assert caught.value.reason == (
        "listing: PBX 'pbx': TLS certificate does not match the configured tls_fingerprint"
    )
    assert not caught.value.transient


@pytest.mark.parametrize("tls_url", ["self"], indirect=True)
async def test_verify_off_works(tls_url: str) -> None:
    assert await _find(tls_url, verify_tls=False) > 0


def test_verify_off_warns_at_every_start(
    tmp_path: Path, certs: Certs, s3_env: dict[str, str], seaweed: SeaweedS3, bucket: str
) -> None:
    env = {**os.environ, **s3_env, "TEST_PBX_PASSWORD": PASSWORD}
    with SimulatorThread(_options(certs.self_signed)) as sim:
        assert sim.base_url.startswith("https://")
        config = tmp_path / "a.toml"
        config.write_text(
            daemon_toml(sim.base_url, seaweed, bucket, tmp_path, pbx={"verify_tls": False}),
            "utf-8",
        )
        args = ("--config", str(config), "--from", DAY.isoformat(), "--to", DAY.isoformat())
        backfill = run_archiver("backfill", *args, env=env)
        checked = run_archiver("check-config", "--config", str(config), env=env)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    events = json_events(backfill.stdout)
    assert [e["pbx"] for e in events if e["event"] == "tls_verification_off"] == ["pbx"]
    assert any(e["event"] == "archived" for e in events)
    assert checked.returncode == 0
    assert "warning: pbx 'pbx': verify_tls = false" in checked.stderr
