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

Every process started here is stopped by the fixture (or by ``MosquittoBroker.close()``); nothing is left
running.  Waiting for the broker to listen is a readiness poll with a generous deadline, not a timing assertion.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "MosquittoBroker",
    "TestPki",
    "find_free_port",
    "make_test_pki",
    "mosquitto_executable",
    "mosquitto_broker",
    "mosquitto_factory",
    "READY_TIMEOUT_S",
]

#: Deadline for a started broker to accept TCP connections (a failure to start, not a speed goal).
READY_TIMEOUT_S = 15.0


def mosquitto_executable() -> str:
    """Path of the mosquitto binary (PATH, then /usr/sbin); fails the test with a clear message when missing."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail("expected the 'mosquitto' broker on PATH or in /usr/sbin (apt install mosquitto), found none")
    return found


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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


class MosquittoBroker:
    """One mosquitto process with a generated configuration in ``workdir``.

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
    """

    def __init__(self, workdir: Path, *, port: int | None = None, tls: TestPki | None = None,
                 require_certificate: bool = False, passwords: Mapping[str, str] | None = None,
                 acl: str | None = None, persistence: bool = True, extra_conf: str = "") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port if port is not None else find_free_port()
        self.tls = tls
        self.require_certificate = require_certificate
        self.passwords = dict(passwords or {})
        self.acl = acl
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # ----------------------------------------------------------------------------------------------- config

    def _write_conf(self) -> None:
        lines = [f"listener {self.port} {self.host}", f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "connection_messages true", "max_queued_messages 100000", "max_inflight_messages 100"]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto switches to 'mosquitto' and cannot write workdir
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
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
        if self.extra_conf:
            lines.append(self.extra_conf)
        self.conf_path.write_text("\n".join(lines) + "\n")

    # -------------------------------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> MosquittoBroker:
        """Start mosquitto and wait until it accepts connections."""
        if self.running:
            return self
        self._write_conf()
        self._proc = subprocess.Popen([mosquitto_executable(), "-c", str(self.conf_path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err.strip()}\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {READY_TIMEOUT_S} s\n"
                           f"{self.log()}")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: mosquitto saves its persistence database) and wait for the exit."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): state since the last autosave is lost, as in a crash."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self, *, port: int | None = None) -> MosquittoBroker:
        """Stop gracefully and start again (on ``port`` when given, else the same port)."""
        self.stop()
        if port is not None:
            self.port = port
        return self.start()

    def close(self) -> None:
        """Stop the process if it runs (idempotent)."""
        self.stop()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self) -> str:
        """The broker's log so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


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
