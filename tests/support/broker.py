"""A real ``mosquitto`` broker for tests: start/stop/kill/restart on a free port, with optional TLS, passwords, ACL.

Importable helper plus pytest fixtures (``mosquitto_broker``, ``mosquitto_factory``, registered for every test through
``pytest_plugins`` in tests/conftest.py), for any test that needs a broker::

    from tests.support.broker import MosquittoBroker, make_test_pki

    def test_x(mosquitto_broker):                 # plain listener on 127.0.0.1:<free port>, persistence on
        port = mosquitto_broker.port
        mosquitto_broker.stop(); mosquitto_broker.start()   # same port, retained/session state kept

    def test_y(tmp_path, mosquitto_factory):      # custom brokers, all stopped at teardown
        pki = make_test_pki(tmp_path / "pki")
        broker = mosquitto_factory(tls=pki, require_certificate=True, passwords={"dev": "secret"})

:class:`MosquittoBroker` is the harness's :class:`benchmarks.harness.mosquitto.Mosquitto` (one mosquitto for the
demo, the benchmarks and the tests: its configuration, readiness wait, stop, kill, restart on the same port) with
what only tests need: persistence on by default, TLS from a throw-away PKI, passwords and an ACL.  Every process
started here is stopped by the fixture (or by ``MosquittoBroker.close()``); nothing is left running.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness.mosquitto import Mosquitto

__all__ = ["MosquittoBroker", "TestPki", "make_test_pki", "mosquitto_broker", "mosquitto_factory"]


def _mosquitto_password_hash(password: str) -> str:
    """Mosquitto 2.x ``$7$`` password hash: PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass(frozen=True)
class TestPki:
    """PEM files of a throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    __test__ = False  # not a pytest test class

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  #: a second CA that signed nothing here (for "unknown CA" tests)


def make_test_pki(directory: Path, *, client_cn: str = "nir-01") -> TestPki:
    """Generate a CA, a server certificate (SAN 127.0.0.1, localhost) and a client certificate with
    ``cryptography`` into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(path: Path, k: ec.EllipticCurvePrivateKey) -> Path:
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        path.chmod(0o600)
        return path

    def write_cert(path: Path, cert: x509.Certificate) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(k.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(k, hashes.SHA256()))
        return k, cert

    def leaf(cn: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, server: bool
             ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(k.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return k, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca = make_ca("spectrolite test CA")
    _other_key, other_ca = make_ca("unrelated test CA")
    server_key, server = leaf("localhost", ca_key, ca, server=True)
    client_key, client = leaf(client_cn, ca_key, ca, server=False)
    return TestPki(
        ca_cert=write_cert(directory / "ca.pem", ca),
        server_cert=write_cert(directory / "server.pem", server),
        server_key=write_key(directory / "server.key", server_key),
        client_cert=write_cert(directory / "client.pem", client),
        client_key=write_key(directory / "client.key", client_key),
        other_ca_cert=write_cert(directory / "other-ca.pem", other_ca),
    )


class MosquittoBroker(Mosquitto):
    """One mosquitto process with a generated configuration in ``workdir`` (:class:`Mosquitto`, with mosquitto's
    own ``set_tcp_nodelay`` default and verbose logs).

    Parameters
    ----------
    workdir : Path
        Holds mosquitto.conf, the log, the persistence database, password and ACL files.
    port : int, optional
        Listener port on 127.0.0.1 (default: a free one, kept across restarts).
    tls : TestPki, optional
        Serve TLS with the PKI's server certificate.
    require_certificate : bool
        With TLS, require a client certificate signed by the PKI's CA.
    passwords : mapping of user -> password, optional
        Disable anonymous access and accept these users.
    acl : str, optional
        Content of an ACL file (mosquitto syntax).
    persistence : bool
        Keep retained messages, sessions and queued QoS>0 messages across restarts.
    extra_conf : str
        Lines appended to the configuration.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, tls: TestPki | None = None,
                 require_certificate: bool = False, passwords: Mapping[str, str] | None = None,
                 acl: str | None = None, persistence: bool = True, extra_conf: str = "") -> None:
        super().__init__(Path(workdir), port=port, tcp_nodelay=None, persistence=persistence,
                         max_queued_messages=100_000, log_types=("error", "warning", "notice", "information"),
                         extra_conf=extra_conf)
        self.tls = tls
        self.require_certificate = require_certificate
        self.passwords = dict(passwords or {})
        self.acl = acl

    def access_lines(self) -> list[str]:
        """TLS, passwords (else anonymous access) and the ACL."""
        lines: list[str] = []
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca_cert}", f"certfile {self.tls.server_cert}",
                      f"keyfile {self.tls.server_key}",
                      f"require_certificate {'true' if self.require_certificate else 'false'}"]
        if self.passwords:
            pw = self.workdir / "passwd"
            pw.write_text("".join(f"{u}:{_mosquitto_password_hash(p)}\n" for u, p in self.passwords.items()))
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_path = self.workdir / "acl"
            acl_path.write_text(self.acl)
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        return lines

    def start(self) -> MosquittoBroker:
        """Start mosquitto and wait until it accepts connections; fails the test when mosquitto is not installed."""
        try:
            super().start()
        except FileNotFoundError as exc:
            pytest.fail(str(exc))
        return self

    def restart(self, *, port: int | None = None) -> MosquittoBroker:
        """Stop gracefully and start again (on ``port`` when given, else the same port)."""
        super().restart(port=port)
        return self

    def __enter__(self) -> MosquittoBroker:
        return self.start()


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A started plain mosquitto on a free port with persistence; stopped at teardown."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Factory ``make(**MosquittoBroker kwargs) -> started broker``; every broker made is stopped at teardown."""
    brokers: list[MosquittoBroker] = []

    def make(**kwargs: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(brokers)}", **kwargs)
        brokers.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in brokers:
            broker.close()
