"""RFC 5322 bytes for an `OutgoingEmail`, safe for any SMTP server.

Bodies are quoted-printable (so a one-line minified HTML body still arrives: no line reaches
998 characters), line endings are CRLF, and headers are RFC 2047-encoded where needed. The
legacy `email.mime` classes are used because they build about 3.5x faster than `EmailMessage`
under `policy.default` (see shared/notes/perf_baselines.md); CR/LF in header values was
rejected before anything reaches this module.
"""

from __future__ import annotations

import binascii
import uuid
from datetime import datetime
from email import charset as email_charset
from email.charset import Charset
from email.generator import BytesGenerator
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import compat32
from email.utils import format_datetime, formataddr
from io import BytesIO
from typing import Any

from tools.providers.base import Content, OutgoingEmail


class _SMTPPolicy(type(compat32)):  # type: ignore[misc]  # email.policy exports no class name
    """compat32 with CRLF line endings and cheaper, tidier folding of plain ASCII headers.

    compat32 runs every header through `email.header.Header`, about a third of the cost of
    building a message, and puts a long value's first item on a line of its own. Short ASCII
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


class _Generator(BytesGenerator):
    """The stock generator, but a body goes out in one write instead of two per line.

    Every 76-character quoted-printable line cost two writes and two encodes, about a third of
    the time of building a message. The bytes are the same: line endings become the policy's,
    and a final line without one stays without (`tests/test_wire_format.py` compares the two).
    """

    def _write_lines(self, lines: str) -> None:
        # What the stock generator's split on r"\r\n|\r|\n" does, without a regex.
        if lines:
            self.write(lines.replace("\r\n", "\n").replace("\r", "\n").replace("\n", self._NL))


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


def _text_part(body: str, subtype: str) -> MIMENonMultipart:
    """A UTF-8 quoted-printable text part, encoded by `binascii` (C) rather than the pure
    Python encoder `MIMEText` uses: the same output standard (RFC 2045, lines of at most 76
    characters), at about a tenth of the cost."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii"))
    return part


def _boundary() -> str:
    # "=_" cannot occur in quoted-printable or base64 text, so no part can contain this line;
    # without one, the generator compiles a regex per multipart to search for a safe boundary.
    return f"=_{uuid.uuid4().hex}"


def build_mime(email: OutgoingEmail, content: Content, date: datetime) -> bytes:
    """The message as it goes on the wire (CRLF line endings). Bcc is never a header."""
    return flatten(mime_tree(email, content, date))


def mime_tree(email: OutgoingEmail, content: Content, date: datetime) -> MIMEMultipart:
    """The message as `email.mime` objects, before it is written out."""
    body = MIMEMultipart("alternative", boundary=_boundary())
    body.attach(_text_part(content.text, "plain"))
    body.attach(_text_part(content.html, "html"))
    root = body
    if email.attachments:
        root = MIMEMultipart("mixed", boundary=_boundary())
        root.attach(body)
        for item in email.attachments:
            maintype, _, subtype = item.content_type.partition("/")
            part = MIMEApplication(item.data, subtype or "octet-stream")
            if maintype != "application":
                part.replace_header("Content-Type", item.content_type)
            filename = item.filename if item.filename.isascii() else ("utf-8", "", item.filename)
            part.add_header("Content-Disposition", "attachment", filename=filename)
            root.attach(part)

    root["From"] = _address_header(email.sender_name, email.sender_email)
    root["To"] = email.to
    if email.cc:
        root["Cc"] = ", ".join(email.cc)
    root["Subject"] = _text_header(email.subject)
    root["Date"] = format_datetime(date)
    root["Message-ID"] = email.message_id
    for name, value in content.headers.items():
        # Structured ASCII values (List-Unsubscribe URLs) must stay literal; compat32 folds
        # them at their spaces.
        root[name] = value if value.isascii() else Header(value, _UTF8_QP)
    return root


def flatten(message: MIMEMultipart) -> bytes:
    """`message.as_bytes(policy=SMTP_POLICY)`, written by `_Generator`."""
    buffer = BytesIO()
    _Generator(buffer, mangle_from_=False, policy=SMTP_POLICY).flatten(message)
    return buffer.getvalue()
