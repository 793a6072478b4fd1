"""RFC 5322 bytes for an `OutgoingEmail`, safe for any SMTP server.

Bodies are quoted-printable (so a one-line minified HTML body still arrives: no line reaches
998 characters), line endings are CRLF, and headers are RFC 2047-encoded where needed. CR/LF in
header values was rejected before anything reaches this module.

The message is written out here rather than built as `email.mime` objects and flattened by
`email.generator`: the build runs on every send, on its critical path, and the objects and the
generator made it about 1.7 times as costly (0.5 million of the 6.9 million instructions of a
send). The bytes are the same: `tests/test_wire_format.py` builds the same message as an
`email.mime` tree, flattens it with the stdlib generator under `SMTP_POLICY`, and compares.
Headers go through the policy's own folding, and attachments are `email.mime` parts
written by the stdlib generator (their base64 and RFC 2231 file names are its job).
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from email import charset as email_charset
from email.charset import Charset
from email.generator import BytesGenerator
from email.header import Header
from email.mime.application import MIMEApplication
from email.policy import compat32
from email.utils import format_datetime, formataddr
from io import BytesIO
from typing import Any

from tools.providers.base import Attachment, OutgoingEmail


class _SMTPPolicy(type(compat32)):  # type: ignore[misc]  # email.policy exports no class name
    """compat32 with CRLF line endings and cheaper, tidier folding of plain ASCII headers.

    compat32 runs every header through `email.header.Header`, about a third of the cost of
    writing the headers, and puts a long value's first item on a line of its own. Short ASCII
    values are written as they are; long ones are structured lists here (List-Unsubscribe,
    Cc), folded after each comma. Unstructured text arrives as `Header` objects (see
    `_text_header`) and keeps the standard folding. Values were checked free of control
    characters before reaching this module.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, str) and value.isascii():
            if len(name) + len(value) + 2 <= self.max_line_length:
                return f"{name}: {value}{self.linesep}".encode("ascii")
            items = value.split(", ")
            if len(name) + len(items[0]) + 3 <= 998 and all(len(i) + 2 <= 998 for i in items):
                folded = f",{self.linesep} ".join(items)
                return f"{name}: {folded}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


SMTP_POLICY = _SMTPPolicy(linesep="\r\n")
_CRLF = b"\r\n"


def _utf8_qp() -> Charset:
    # A private Charset object: importing Flask-Mail re-registers "utf-8" globally with no body
    # encoding (8bit, unwrapped), which is exactly what must not reach the wire.
    cs = Charset("utf-8")
    cs.header_encoding = email_charset.SHORTEST
    cs.body_encoding = email_charset.QP
    cs.output_charset = "utf-8"
    return cs


_UTF8_QP = _utf8_qp()
_SHORT = 60  # characters a header value may have and still go out literally

_Headers = Sequence[tuple[str, str | Header]]


def _text_header(value: str) -> str | Header:
    """An unstructured header (Subject): short ASCII as is, anything else as encoded words,
    which fold anywhere, so even one 900-character word stays within the line limit."""
    if value.isascii() and len(value) <= _SHORT:
        return value
    return Header(value, _UTF8_QP)


def _address_header(name: str | None, address: str) -> str | Header:
    if not name:
        return address
    if name.isascii() and len(name) <= _SHORT:
        return formataddr((name, address))
    header = Header(name, _UTF8_QP)
    header.append(f"<{address}>", "us-ascii")
    return header


def message_headers(email: OutgoingEmail) -> list[tuple[str, str]]:
    """The top-level headers every build of `email` writes, as text (encoded words decoded),
    in the order they go out: the record of what was sent.

    Left out are the two that each build makes anew: Content-Type (a fresh boundary) and Date
    (the time of the attempt)."""
    built = _message_headers(email, None)
    return [("MIME-Version", "1.0"), *((name, str(value)) for name, value in built)]


def _message_headers(email: OutgoingEmail, date: datetime | None) -> _Headers:
    """The top-level headers after Content-Type and MIME-Version, in the order they go out
    (Date only when given). Bcc is never a header."""
    headers: list[tuple[str, str | Header]] = [
        ("From", _address_header(email.sender_name, email.sender_email)),
        ("To", email.to),
    ]
    if email.cc:
        headers.append(("Cc", ", ".join(email.cc)))
    headers.append(("Subject", _text_header(email.subject)))
    if date is not None:
        headers.append(("Date", format_datetime(date)))
    headers.append(("Message-ID", email.message_id))
    # Structured ASCII values (List-Unsubscribe URLs) must stay literal; compat32 folds them at
    # their spaces.
    headers += [
        (name, value if value.isascii() else Header(value, _UTF8_QP))
        for name, value in email.content.headers.items()
    ]
    return headers


def build_mime(email: OutgoingEmail, date: datetime) -> bytes:
    """The message as it goes on the wire (CRLF line endings): multipart/alternative (plain
    text, then HTML), inside multipart/mixed when there are attachments."""
    bodies = [_text_part(email.content.text, "plain"), _text_part(email.content.html, "html")]
    headers = _message_headers(email, date)
    if not email.attachments:
        return _multipart("alternative", bodies, headers)
    parts = [_multipart("alternative", bodies), *map(_attachment_part, email.attachments)]
    return _multipart("mixed", parts, headers)


def quoted_printable(text: str) -> bytes:
    """`text` as UTF-8 quoted-printable with CRLF line breaks (RFC 2045 6.7): lines of at most
    76 characters, and no whitespace left at the end of one.

    `binascii` (C) encodes, at about a tenth of the cost of the stdlib's pure Python encoder,
    with two things done around it. It takes only LF for a line break, so CRLF and a bare CR
    become LF first (else a space before a bare CR would stay unencoded at a line's end). And
    it lets a line that ends in encoded whitespace ("=20", "=09") reach 77 or 78 characters, so
    such a line gets a soft break before that whitespace.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True)
    if b"=20\n" in encoded or b"=09\n" in encoded:
        encoded = b"\n".join(map(_within_76, encoded.split(b"\n")))
    return encoded.replace(b"\n", _CRLF)


def _within_76(line: bytes) -> bytes:
    # Only a line ending in encoded whitespace before a line break is ever longer (at the end
    # of the text binascii breaks it itself), by at most 2; its last 3 characters are that
    # whitespace, so the cut cannot split an escape.
    return line if len(line) <= 76 else line[:-3] + b"=\n" + line[-3:]


def _text_part(body: str, subtype: str) -> bytes:
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "MIME-Version: 1.0\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return head.encode("ascii") + quoted_printable(body)


def _attachment_part(item: Attachment) -> bytes:
    """A base64 part. A message/* or multipart/* file (an .eml, say) goes as
    application/octet-stream: RFC 2046 allows those types no base64, and the stdlib would write
    their base64 with bare LF line ends."""
    maintype, _, subtype = item.content_type.partition("/")
    if maintype in ("message", "multipart"):
        maintype, subtype = "application", "octet-stream"
    part = MIMEApplication(item.data, subtype or "octet-stream")
    if maintype != "application":
        part.replace_header("Content-Type", item.content_type)
    filename = item.filename if item.filename.isascii() else ("utf-8", "", item.filename)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=SMTP_POLICY).flatten(part)
    return buffer.getvalue()


def _multipart(subtype: str, parts: list[bytes], headers: _Headers = ()) -> bytes:
    """A multipart entity around `parts` (each a whole entity: headers, blank line, body)."""
    boundary = _boundary()
    lines = [
        SMTP_POLICY.fold_binary(name, value)
        for name, value in (
            ("Content-Type", f'multipart/{subtype}; boundary="{boundary}"'),
            ("MIME-Version", "1.0"),
            *headers,
        )
    ]
    delimiter = f"--{boundary}".encode("ascii")
    body = (_CRLF + delimiter + _CRLF).join(parts)
    return b"".join([*lines, _CRLF, delimiter, _CRLF, body, _CRLF, delimiter, b"--", _CRLF])


def _boundary() -> str:
    # "=_" cannot occur in quoted-printable or base64 text, so no part can contain this line.
    return f"=_{uuid.uuid4().hex}"
