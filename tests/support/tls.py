"""TLS for the broker tests: a private CA and server certificate made with openssl, as an
installer would, and the stack's mosquitto with its TLS listener example switched on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts import local_broker
from tests.support import servers
from tests.support.collect_helpers import SITE

# The stack broker's users: the collector tests' site and the read-only ingestor.
USERS = {SITE: "site-secret", "ingestor": "ingestor-secret"}


def openssl(*args: str) -> None:
    subprocess.run([servers.require("openssl"), *args], check=True, capture_output=True)


def make_certificates(where: Path) -> None:
    """ca.crt, server.crt, server.key: the names mosquitto/conf.d/tls.conf.example expects."""
    where.mkdir(parents=True)
    ca_key, ca, key, csr, cert = (
        where / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt")
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=irve test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    san = where / "san.cnf"
    san.write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(san), "-out", str(cert))  # fmt: skip


@contextmanager
def tls_stack_broker(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(plain port, TLS port) of the stack's broker with tls.conf.example enabled; the
    certificates in `tmp_path/certs`."""
    certs = tmp_path / "certs"
    make_certificates(certs)
    port, tls_port = servers.free_port(), servers.free_port()
    conf = local_broker.prepare(tmp_path / "broker", port, USERS)
    example = (local_broker.MOSQUITTO_DIR / "conf.d" / "tls.conf.example").read_text()
    assert "\nlistener 8883\n" in example
    tls_conf = example.replace("/mosquitto/certs", str(certs)).replace(
        "\nlistener 8883\n", f"\nlistener {tls_port} 127.0.0.1\n"
    )
    (conf.parent / "conf.d" / "tls.conf").write_text(tls_conf)
    server = servers.mosquitto_on(conf, port, tmp_path / "broker", tls_port)
    server.start()
    try:
        yield port, tls_port
    finally:
        server.stop()
