"""STARTTLS, implicit TLS and login against a real aiosmtpd server with its own certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.smtp_sink import RecordingHandler
from tools.providers.base import OutgoingEmail, PermanentProviderError
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


def _email() -> OutgoingEmail:
    return OutgoingEmail(
        email_id="9f1c0f8e-7a43-4c55-9d55-0f0c7d3b1a11",
        workspace_id="w",
        idempotency_key="k",
        message_id="<9f1c0f8e-7a43-4c55-9d55-0f0c7d3b1a11@acme.example>",
        sender_email="news@acme.example",
        sender_name="Acme",
        to="bob@example.com",
        cc=(),
        bcc=(),
        subject="Over TLS",
        html="<p>secret</p>",
        text="secret",
        headers={},
    )


def test_starttls_with_login_delivers_over_an_encrypted_session(certificate):
    handler = RecordingHandler()
    server = _tls_sink(handler, certificate, starttls=True)
    try:
        provider = SMTPProvider(
            "127.0.0.1",
            server.port,
            use_tls=True,
            username="mailer",
            password="s3cret",
            tls_context=_trusting(certificate),
        )
        provider.send(_email())
        provider.close()
    finally:
        server.stop()
    assert len(handler.messages) == 1
    assert handler.tls_sessions == 1


def test_implicit_tls_delivers(certificate):
    handler = RecordingHandler()
    server = _tls_sink(handler, certificate, starttls=False)
    try:
        provider = SMTPProvider(
            "127.0.0.1", server.port, use_ssl=True, tls_context=_trusting(certificate)
        )
        provider.send(_email())
        provider.close()
    finally:
        server.stop()
    assert len(handler.messages) == 1


def test_an_untrusted_certificate_is_refused_and_nothing_is_sent(certificate):
    handler = RecordingHandler()
    server = _tls_sink(handler, certificate, starttls=True)
    try:
        provider = SMTPProvider("127.0.0.1", server.port, use_tls=True)  # system CAs only
        with pytest.raises(PermanentProviderError, match="certificate"):
            provider.send(_email())
    finally:
        server.stop()
    assert handler.messages == []


def test_a_wrong_password_is_a_permanent_failure(certificate):
    handler = RecordingHandler()
    server = _tls_sink(handler, certificate, starttls=True)
    try:
        provider = SMTPProvider(
            "127.0.0.1",
            server.port,
            use_tls=True,
            username="mailer",
            password="wrong",
            tls_context=_trusting(certificate),
            timeout=5,
        )
        with pytest.raises(PermanentProviderError) as caught:
            provider.send(_email())
        assert caught.value.status_code == 535
        assert "wrong" not in str(caught.value)
    finally:
        server.stop()
    assert handler.messages == []


def _tls_sink(handler: RecordingHandler, certificate: tuple[Path, Path], *, starttls: bool):
    from tools.dev_smtp_server import LocalSMTPServer

    handler.tls_sessions = 0
    original = handler.handle_DATA

    async def counting_data(server: Any, session: Any, envelope: Any) -> str:
        if session.ssl is not None:
            handler.tls_sessions += 1
        return await original(server, session, envelope)

    handler.handle_DATA = counting_data  # type: ignore[method-assign]
    context = _server_context(certificate)
    if starttls:
        server = LocalSMTPServer(
            handler,
            tls_context=context,
            require_starttls=True,
            authenticator=_authenticator,
            auth_require_tls=True,
        )
    else:
        server = LocalSMTPServer(
            handler, ssl_context=context, authenticator=_authenticator, auth_require_tls=False
        )
    server.start()
    return server
