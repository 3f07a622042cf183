"""A throwaway OpenLDAP (Debian's slapd) on 127.0.0.1 for the directory-login tests: its own
folder and ports, a certificate from a test CA for LDAPS and StartTLS, people and groups loaded
with slapadd; started and stopped by its PID."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import free_port

SUFFIX = "dc=example,dc=com"
PEOPLE = {"deniz": "Deniz-Dir-Pass-1", "ece": "Ece-Dir-Pass-22", "fikret": "Fikret-Dir-3"}
# group cn -> members
GROUPS = {"officers": ["deniz"], "team-a": ["ece"], "nobody-group": ["fikret"]}
_SLAPD = Path("/usr/sbin/slapd")
_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def user_dn(name: str) -> str:
    return f"uid={name},ou=people,{SUFFIX}"


def group_dn(name: str) -> str:
    return f"cn={name},ou=groups,{SUFFIX}"


def _ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: cn=archiver,{SUFFIX}\nobjectClass: inetOrgPerson\ncn: archiver\nsn: service\n"
        "userPassword: Service-Account-9",
    ]
    for name, password in PEOPLE.items():
        entries.append(f"dn: {user_dn(name)}\nobjectClass: inetOrgPerson\nuid: {name}\n"
                       f"cn: {name}\nsn: {name}\nuserPassword: {password}")  # fmt: skip
    for group, members in GROUPS.items():
        lines = "".join(f"\nmember: {user_dn(m)}" for m in members)
        entries.append(f"dn: {group_dn(group)}\nobjectClass: groupOfNames\ncn: {group}{lines}")
    return "\n\n".join(entries) + "\n"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificates(folder: Path, *, right_name: bool = True) -> tuple[Path, Path, Path]:
    """(CA file, server certificate, server key) for 127.0.0.1 and localhost (or, without
    `right_name`, for another host only)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def issue(subject: str, public: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name("archiver test LDAP CA"))
            .public_key(public.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False), critical=True)  # fmt: skip
        else:
            san: list[x509.GeneralName] = [x509.DNSName("directory.other.example")]
            if right_name:
                san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(issue("archiver test LDAP CA", ca_key, ca=True).public_bytes(
        serialization.Encoding.PEM))  # fmt: skip
    cert_path.write_bytes(issue("127.0.0.1", key, ca=False).public_bytes(
        serialization.Encoding.PEM))  # fmt: skip
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return ca_path, cert_path, key_path


class LocalSlapd:
    """slapd serving ldaps:// on `ldaps_port` and ldap:// (StartTLS) on `ldap_port`."""

    def __init__(self, folder: Path, *, right_name: bool = True) -> None:
        self.folder = folder
        self.ldaps_port, self.ldap_port = free_port(), free_port()
        self.ca_file, cert, key = _certificates(folder, right_name=right_name)
        (folder / "db").mkdir()
        includes = "".join(f"include /etc/ldap/schema/{s}.schema\n" for s in _SCHEMAS)
        self.conf = folder / "slapd.conf"
        self.conf.write_text(
            f"{includes}modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            f"pidfile {folder / 'slapd.pid'}\nTLSCACertificateFile {self.ca_file}\n"
            f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
            f'database mdb\nsuffix "{SUFFIX}"\nrootdn "cn=admin,{SUFFIX}"\n'
            f"rootpw admin-secret\ndirectory {folder / 'db'}\n"
        )
        (folder / "base.ldif").write_text(_ldif())
        subprocess.run(["/usr/sbin/slapadd", "-f", str(self.conf), "-l",
                        str(folder / "base.ldif")], check=True, capture_output=True)  # fmt: skip
        self.pid: int | None = None

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    def start(self) -> None:
        urls = f"{self.ldaps_url}/ {self.ldap_url}/"
        subprocess.run([str(_SLAPD), "-f", str(self.conf), "-h", urls], check=True,
                       capture_output=True)  # fmt: skip  # daemonises
        pidfile = self.folder / "slapd.pid"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip():
                self.pid = int(pidfile.read_text().strip())
                if self._answers():
                    return
            time.sleep(0.05)
        raise RuntimeError("slapd did not start")

    def _answers(self) -> bool:
        probe = subprocess.run(
            ["ldapwhoami", "-x", "-H", self.ldap_url, "-D", user_dn("deniz"), "-w",
             PEOPLE["deniz"]], capture_output=True, check=False)  # fmt: skip
        return probe.returncode == 0

    def stop(self) -> None:
        if self.pid is None:
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.pid = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
