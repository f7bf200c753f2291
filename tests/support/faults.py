"""Helpers for the downloader's fault-injection tests: a fake resolver, a socket spy, TLS.

They keep every test on loopback: host names are answered from a table (no DNS query leaves
the machine) and every outgoing connection is recorded and refused unless it targets 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import urllib3.util.connection

from collage.engine import url_guard

LOOPBACK = {"127.0.0.1", "::1"}


class NetworkSpy:
    """Records name lookups and connection attempts; refuses any non-loopback connection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
        self.names = names
        self.resolved: list[str] = []  # hosts our resolver was asked for
        self.connects: list[str] = []  # every address a socket was asked to connect to
        self.lookups: list[str] = []  # hosts socket.getaddrinfo saw (numeric only allowed)
        real_create = urllib3.util.connection.create_connection
        real_getaddrinfo = socket.getaddrinfo

        real_resolve = url_guard.resolve

        def fake_resolve(host: str, port: int) -> list[str]:
            self.resolved.append(host)
            if host in names:
                return list(names[host])
            return real_resolve(host, port)  # numeric forms only, see numeric_getaddrinfo

        def guarded_create(address, *args, **kwargs):
            host = str(address[0])
            self.connects.append(host)
            if host not in LOOPBACK:
                raise AssertionError(f"test tried to connect to non-loopback {host}")
            return real_create(address, *args, **kwargs)

        def numeric_getaddrinfo(host, port, *args, **kwargs):
            # Numeric parsing only: a test must never make a real DNS query.
            self.lookups.append(str(host))
            return real_getaddrinfo(
                host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
            )

        monkeypatch.setattr(url_guard, "resolve", fake_resolve)
        monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded_create)
        monkeypatch.setattr(socket, "getaddrinfo", numeric_getaddrinfo)


# --- TLS: a throwaway CA and a loopback HTTPS server that records SNI ---------------------------


def make_tls_files(directory: Path, hostname: str) -> tuple[Path, Path, Path]:
    """A CA certificate and a leaf certificate + key for `hostname`: (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collage test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@contextmanager
def tls_server(cert: Path, key: Path, body: bytes) -> Iterator[tuple[int, list[str | None]]]:
    """An HTTPS server on 127.0.0.1 serving `body` for any path: yields (port, SNI names seen)."""
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 5

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False

        def server_bind(self) -> None:  # skip HTTPServer's reverse DNS lookup
            socketserver.TCPServer.server_bind(self)

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield httpd.server_address[1], names
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
