"""The message as it arrives: valid on the wire whatever the content looks like."""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from email import charset as email_charset
from email.charset import Charset
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.builders import ASSET, outgoing_email, send
from tests.observers import body_of, parse_message
from tools.providers.base import Attachment, Content
from tools.providers.smtp_mime import SMTP_POLICY, build_mime, quoted_printable


def _lines(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\r\n") or b"\r\n" in raw
    return raw.split(b"\r\n")


def test_every_line_ends_in_crlf_and_none_exceeds_998_characters(workspace, smtp_sink, runtime):
    minified = "<div>" + "".join(f"<p>Paragraph {i} with some words.</p>" for i in range(1200))
    asset = {**ASSET, "html_body": minified + "</div>", "text_body": "t " * 10_000}
    result = send(workspace, final_asset=asset)

    assert result["status"] == "sent", result
    raw = smtp_sink.messages[0].data
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF
    assert b"\r" not in raw.replace(b"\r\n", b"")  # no bare CR
    assert max(len(line) for line in _lines(raw)) <= 998
    message = parse_message(raw)
    for part in message.walk():
        if part.get_content_maintype() == "text":
            assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert minified in body_of(message, "html")  # the one-line body arrives intact


def test_non_ascii_subject_and_sender_name_are_encoded_and_round_trip(
    workspace, smtp_sink, runtime
):
    asset = {**ASSET, "subject": "Grüße, Zoë — ваш счёт 🎉", "html_body": "<p>Ünïcödé body ✓</p>"}
    result = send(workspace, final_asset=asset)

    raw = smtp_sink.messages[0].data
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()
    assert b"=?utf-8?" in header_block
    message = parse_message(raw)
    assert message["Subject"] == asset["subject"]
    assert "Ünïcödé body ✓" in body_of(message, "html")
    assert result["status"] == "sent"


def test_international_domain_goes_on_the_wire_as_punycode(workspace, smtp_sink, runtime):
    result = send(workspace, "bob@bücher.example")

    assert result["status"] == "sent", result
    assert smtp_sink.messages[0].rcpt_tos == ["bob@xn--bcher-kva.example"]
    assert parse_message(smtp_sink.messages[0].data)["To"] == "bob@xn--bcher-kva.example"


def test_derived_text_part_when_cx06_gave_none(workspace, smtp_sink, runtime):
    html = '<h1>Welcome &amp; thanks</h1><p>Start <a href="https://acme.example/go">here</a>.</p>'
    asset = {"subject": "Welcome", "html_body": html}
    send(workspace, final_asset=asset)

    text = body_of(parse_message(smtp_sink.messages[0].data), "plain")
    assert text.startswith("Welcome & thanks\n\nStart here (https://acme.example/go).")


def test_full_html_document_keeps_its_own_structure(workspace, smtp_sink, runtime):
    html = "<html><head><title>T</title></head><body class='x'><p>Doc body</p></body></html>"
    send(workspace, final_asset={"subject": "Doc", "html_body": html, "preheader": "Pre"})

    sent = body_of(parse_message(smtp_sink.messages[0].data), "html")
    assert sent.count("<html") == 1 and sent.count("<body") == 1
    assert sent.index("Pre") < sent.index("Doc body") < sent.index("Unsubscribe from")
    assert sent.rstrip().endswith("</body></html>")


def test_footer_and_preheader_are_escaped_but_body_is_sent_as_approved(smtp_sink, runtime):
    import tools

    ws = tools.create_workspace("Evil", "x@evil.example", "<script>alert(1)</script> Road 1")
    asset = {**ASSET, "preheader": "<b>bold?</b>", "html_body": "<p><b>approved bold</b></p>"}
    send(ws, final_asset=asset)

    html = body_of(parse_message(smtp_sink.messages[0].data), "html")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert "<p><b>approved bold</b></p>" in html


def test_cta_url_is_added_once_when_the_body_lacks_it(workspace, smtp_sink, runtime):
    send(workspace, final_asset={**ASSET, "cta_url": "https://acme.example/act?a=1&b=2"})
    message = parse_message(smtp_sink.messages[0].data)

    html = body_of(message, "html")
    assert html.count('href="https://acme.example/act?a=1&amp;b=2"') == 1
    assert "https://acme.example/act?a=1&b=2" in body_of(message, "plain")


@pytest.mark.parametrize(
    ("attachment_name", "content_type"),
    [
        ("report.pdf", "application/pdf"),
        ("données.csv", "text/csv"),
        # message/rfc822 may not be base64 (RFC 2046), and the stdlib wrote it with bare LFs
        ("forwarded.eml", "application/octet-stream"),
    ],
)
def test_attachment_arrives_base64_encoded_with_its_name(
    attachment_name, content_type, workspace, smtp_sink, runtime, tmp_path
):

    import tools

    folder = tmp_path / "files"
    folder.mkdir()
    payload = bytes(range(256)) * 40
    (folder / attachment_name).write_bytes(payload)
    tools.configure(runtime.settings.replace(attachments_dir=folder))

    result = send(workspace, attachments=[attachment_name])

    assert result["status"] == "sent", result
    raw = smtp_sink.messages[0].data
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF
    assert max(len(line) for line in _lines(raw)) <= 998
    message = parse_message(raw)
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == [attachment_name]
    assert attachments[0].get_content_type() == content_type
    assert attachments[0]["Content-Transfer-Encoding"] == "base64"
    assert attachments[0].get_payload(decode=True) == payload
    assert re.search(r"^multipart/mixed", message.get_content_type())


def test_long_and_international_headers_stay_within_the_line_limit(smtp_sink, runtime):
    from email import message_from_bytes
    from email.header import decode_header, make_header

    import tools

    name = "Ünïcødé Sender of Very Long Names " * 5
    ws = tools.create_workspace("Long", "x@long.example", "1 Long Road, Town", name.strip())
    subject = "W" * 900  # one word: nothing to fold at
    send(ws, final_asset={**ASSET, "subject": subject}, cc=[f"c{i}@example.com" for i in range(40)])

    raw = smtp_sink.messages[0].data
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii()
    assert max(len(line) for line in headers.split(b"\r\n")) <= 998
    message = parse_message(raw)
    assert message["Subject"] == subject
    # decode_header, not policy.default: its address parser puts spaces between the adjacent
    # encoded words of a display name (RFC 2047 section 6.2 says to join them).
    raw_from = message_from_bytes(raw)["From"]
    assert str(make_header(decode_header(raw_from.rsplit(" <", 1)[0]))) == name.strip()
    assert not re.search(rb"List-Unsubscribe: *\r\n", headers)  # first line is not empty
    assert len(message["Cc"].addresses) == 40


@pytest.mark.parametrize(
    "tricky",
    [
        "trailing space \nand tab\t\nend",
        ".\n.leading dot\nFrom the start\n",
        "a=b =3D ==\n" + "x" * 300 + "=\n",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ émoji 🎉 " * 40,
    ],
    ids=["line-end-whitespace", "dots-and-from", "equals-and-long-line", "non-bmp"],
)
def test_body_text_survives_quoted_printable_exactly(workspace, smtp_sink, runtime, tricky):
    asset = {**ASSET, "text_body": tricky, "html_body": f"<pre>{tricky}</pre>"}
    result = send(workspace, final_asset=asset)

    assert result["status"] == "sent", result
    raw = smtp_sink.messages[0].data
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in _lines(body)) <= 76  # the quoted-printable limit
    message = parse_message(raw)
    assert tricky in body_of(message, "plain")
    assert f"<pre>{tricky}</pre>" in body_of(message, "html")


_QP_PIECES = ["x", "word ", "é", "🎉", " ", "\t", "=", ".", "\r", "\n", "\r\n", "y" * 37]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_QP_PIECES), max_size=100).map("".join))
@example("x" * 74 + " \n")  # binascii alone makes these lines 77 and 78 characters long
@example("x" * 75 + "\t\nnext")
@example("trailing space \rbefore a bare CR")  # binascii alone leaves that space unencoded
def test_quoted_printable_keeps_rfc_2045s_line_rules_and_round_trips(text):
    encoded = quoted_printable(text)

    lines = encoded.split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines)
    assert all(len(line) <= 76 for line in lines)
    assert not any(line.endswith((b" ", b"\t")) for line in lines)
    as_sent = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    assert binascii.a2b_qp(encoded).decode("utf-8") == as_sent


def _as_the_stdlib_writes_it(email, content, date, boundaries) -> bytes:
    """The message `build_mime` means to write, as an `email.mime` tree written by the stdlib
    generator: its own headers (the test's values need no choice between literal and encoded
    words: the ASCII ones are short or comma lists, the others not ASCII), the same
    quoted-printable payloads (`quoted_printable` has its own test)."""
    utf8_qp = Charset("utf-8")  # a private one: Flask-Mail re-registers the global "utf-8"
    utf8_qp.header_encoding = email_charset.SHORTEST
    utf8_qp.body_encoding = email_charset.QP

    def text_part(body, subtype):
        part = MIMENonMultipart("text", subtype, charset="utf-8")
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(quoted_printable(body).decode("ascii"))
        return part

    def header(value):
        return value if value.isascii() else Header(value, utf8_qp)

    outer = iter(boundaries)
    root = MIMEMultipart("mixed", boundary=next(outer)) if email.attachments else None
    body = MIMEMultipart("alternative", boundary=next(outer))
    body.attach(text_part(content.text, "plain"))
    body.attach(text_part(content.html, "html"))
    if root is None:
        root = body
    else:
        root.attach(body)
        for item in email.attachments:
            maintype, _, subtype = item.content_type.partition("/")
            part = MIMEApplication(item.data, subtype)
            if maintype != "application":
                part.replace_header("Content-Type", item.content_type)
            filename = item.filename if item.filename.isascii() else ("utf-8", "", item.filename)
            part.add_header("Content-Disposition", "attachment", filename=filename)
            root.attach(part)
    sender = Header(email.sender_name, utf8_qp)
    sender.append(f"<{email.sender_email}>", "us-ascii")
    root["From"] = sender
    root["To"] = email.to
    root["Cc"] = ", ".join(email.cc)
    root["Subject"] = header(email.subject)
    root["Date"] = format_datetime(date)
    root["Message-ID"] = email.message_id
    for name, value in content.headers.items():
        root[name] = header(value)
    return root.as_bytes(policy=SMTP_POLICY)


@pytest.mark.parametrize(
    "attachments",
    [
        (),
        (
            Attachment("report.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256)) * 40),
            Attachment("naïve notes.txt", "text/plain", "naïve\r\nnotes\n".encode()),
        ),
    ],
    ids=["alternative", "mixed"],
)
@pytest.mark.parametrize(
    "text",
    [
        "plain\nlines\n",
        "no final newline",
        "crlf\r\nand bare cr\rand lf\n\n\nblank lines\n",
        "trailing space \nand tab\t\n" + "x" * 300 + "=\n.dot\nFrom me\n",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ émoji 🎉 " * 40,
        "",
    ],
    ids=["lf", "no-final-newline", "mixed-line-ends", "qp-edge-cases", "non-bmp", "empty"],
)
def test_the_message_is_byte_for_byte_what_the_stdlib_generator_writes(text, attachments):
    email = outgoing_email(
        sender_name="Acmé News, the long and international sender name of this very workspace",
        cc=("carol@example.com", "dave@example.com"),
        bcc=("erin@example.com",),  # never a header
        subject="Ünïcode subject that is long enough to be folded over more than one line " * 3,
        content=Content(
            html=f"<p>{text}</p>",
            text=text,
            headers={
                "List-Unsubscribe": "<https://x.example/u?token=" + "t" * 200 + ">, "
                "<mailto:u@x.example?subject=" + "t" * 200 + ">",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Campaign": "Ünïcode campaign name",
            },
        ),
        attachments=attachments,
    )
    date = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    raw = build_mime(email, date)

    # The boundaries are random: the stdlib's tree gets the ones this message has.
    boundaries = re.findall(r'boundary="(=_[0-9a-f]{32})"', raw.decode("ascii"))
    assert len(boundaries) == (2 if attachments else 1)
    assert raw == _as_the_stdlib_writes_it(email, email.content, date, boundaries)
