"""Wraps CX06's asset for sending: hidden preheader, the body as given, a CAN-SPAM footer.

The asset's HTML is inserted unchanged (it is the approved content); everything this module
adds (preheader, call-to-action, postal address, links) goes through Jinja2 with autoescape.
A full HTML document keeps its own <html>/<body>: the additions are placed inside its body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from tools.schemas import FinalAsset

_env = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=StrictUndefined,
    keep_trailing_newline=False,
)
_LAYOUT = _env.get_template("layout.html.j2")
_PREHEADER = _env.get_template("preheader.html.j2")
_CTA = _env.get_template("cta.html.j2")
_FOOTER_HTML = _env.get_template("footer.html.j2")
_FOOTER_TEXT = _env.get_template("footer.txt.j2")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class RenderedContent:
    html: str
    text: str


def render_email(
    asset: FinalAsset, *, postal_address: str, sender_name: str | None, unsubscribe_url: str
) -> RenderedContent:
    """The HTML and plain-text parts as they will be sent."""
    preheader = _PREHEADER.render(preheader=asset.preheader) if asset.preheader else ""
    cta = ""
    if asset.cta_url and asset.cta_url not in asset.html_body:
        cta = _CTA.render(cta_url=asset.cta_url, cta_label="Learn more")
    footer = _FOOTER_HTML.render(
        postal_address=postal_address, sender_name=sender_name, unsubscribe_url=unsubscribe_url
    )

    body = asset.html_body
    opening, closing = _BODY_OPEN.search(body), _BODY_CLOSE.search(body)
    if opening and closing and opening.end() <= closing.start():
        html = (
            body[: opening.end()]
            + preheader
            + body[opening.end() : closing.start()]
            + cta
            + footer
            + body[closing.start() :]
        )
    else:
        html = _LAYOUT.render(
            subject=asset.subject,
            preheader_html=Markup(preheader),  # noqa: S704 - rendered by an autoescaping template
            body_html=Markup(body),  # noqa: S704 - CX06's approved HTML, sent as produced
            cta_html=Markup(cta),  # noqa: S704 - rendered by an autoescaping template
            footer_html=Markup(footer),  # noqa: S704 - rendered by an autoescaping template
        )

    text = asset.text_body if asset.text_body else html_to_text(asset.html_body)
    if asset.cta_url and asset.cta_url not in text:
        text = f"{text.rstrip()}\n\n{asset.cta_url}"
    text += _FOOTER_TEXT.render(
        postal_address=postal_address, sender_name=sender_name, unsubscribe_url=unsubscribe_url
    )
    return RenderedContent(html=html, text=text)


class _TextExtractor(HTMLParser):
    _BLOCK: ClassVar[set[str]] = {
        "p",
        "div",
        "br",
        "tr",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "hr",
    }
    _SKIP: ClassVar[set[str]] = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")
        if tag == "a" and self._links:
            href = self._links.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML body (used when CX06 gave no text_body)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
