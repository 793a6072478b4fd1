"""STARTTLS, implicit TLS and login against a real aiosmtpd server with its own certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.builders import outgoing_email
from tests.smtp_sink import RecordingHandler
from tools.dev_smtp_server import LocalSMTPServer
from tools.providers.base import Content, PermanentProviderError
from tools.providers.smtp import SMTPProvider


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's own CA)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mailer", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: the server sends the reply


EMAIL = outgoing_email(
    sender_name="Acme",
    subject="Over TLS",
    content=Content(html="<p>secret</p>", text="secret", headers={}),
)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Callable[..., LocalSMTPServer]]:
    """Starts aiosmtpd with STARTTLS (login required over TLS) or implicit TLS."""
    started: list[LocalSMTPServer] = []

    def start(handler: RecordingHandler, *, starttls: bool) -> LocalSMTPServer:
        context = _server_context(certificate)
        if starttls:
            options = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
        else:
            options = {"ssl_context": context, "auth_require_tls": False}
        server = LocalSMTPServer(handler, authenticator=_authenticator, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _provider(server: LocalSMTPServer, certificate: tuple[Path, Path] | None, **kw: Any):
    context = _trusting(certificate) if certificate else None
    return SMTPProvider("127.0.0.1", server.port, tls_context=context, timeout=5, **kw)


def test_starttls_with_login_delivers_over_an_encrypted_session(certificate, tls_server):
    handler = RecordingHandler()
    server = tls_server(handler, starttls=True)
    provider = _provider(server, certificate, use_tls=True, username="mailer", password="s3cret")
    provider.send(EMAIL)
    provider.close()
    assert [m.tls for m in handler.messages] == [True]


def test_implicit_tls_delivers(certificate, tls_server):
    handler = RecordingHandler()
    provider = _provider(tls_server(handler, starttls=False), certificate, use_ssl=True)
    provider.send(EMAIL)
    provider.close()
    assert [m.tls for m in handler.messages] == [True]


def test_an_untrusted_certificate_is_refused_and_nothing_is_sent(tls_server):
    handler = RecordingHandler()
    provider = _provider(tls_server(handler, starttls=True), None, use_tls=True)  # system CAs
    with pytest.raises(PermanentProviderError, match="certificate"):
        provider.send(EMAIL)
    assert handler.messages == []


def test_a_wrong_password_is_a_permanent_failure(certificate, tls_server):
    handler = RecordingHandler()
    server = tls_server(handler, starttls=True)
    provider = _provider(server, certificate, use_tls=True, username="mailer", password="wrong")
    with pytest.raises(PermanentProviderError) as caught:
        provider.send(EMAIL)
    assert caught.value.status_code == 535
    assert "wrong" not in str(caught.value)
    assert handler.messages == []
