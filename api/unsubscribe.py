"""The unsubscribe link's pages: GET shows what will happen and a confirm button (it changes
nothing, so link scanners cannot unsubscribe anyone); POST with `List-Unsubscribe=One-Click`
(RFC 8058: form-encoded or multipart, no cookies, no auth) suppresses the address."""

from __future__ import annotations

from flask import Response, render_template, request
from flask_openapi3 import APIBlueprint, Tag

import tools
from api.schemas import TokenQuery

unsubscribe = APIBlueprint(
    "unsubscribe",
    __name__,
    url_prefix="/api/email",
    abp_tags=[Tag(name="unsubscribe", description="Public unsubscribe pages (no API key)")],
)

_HTML = {"text/html": {"schema": {"type": "string"}}}
_PAGES = {
    200: {"description": "The page", "content": _HTML},
    400: {
        "description": "A link that is not valid or has expired (the page); a malformed query "
        "(JSON). Nothing changed.",
        "content": {
            **_HTML,
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}},
        },
    },
}


def _page(status: int, **context: object) -> Response:
    response = Response(render_template("unsubscribe.html", **context), status=status)
    response.mimetype = "text/html"
    # The token is in the URL: keep it out of Referer headers, frames and caches.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    )
    return response


@unsubscribe.get("/unsubscribe", responses=_PAGES)
def confirm_page(query: TokenQuery):
    """The confirmation page. Changes nothing."""
    if not query.token:
        return _page(400, state="invalid", message="this unsubscribe link is not complete")
    found = tools.describe_unsubscribe(query.token)
    if not found["success"]:
        return _page(400, state="invalid", message=found["error"]["message"])
    return _page(
        200,
        state="done" if found["already_unsubscribed"] else "confirm",
        email=found["email"],
        sender=found["workspace_name"],
        token=query.token,
    )


@unsubscribe.post("/unsubscribe", responses=_PAGES)
def one_click(query: TokenQuery):
    """RFC 8058 one-click, and the confirm button: the body must carry
    `List-Unsubscribe=One-Click`. Answers 200, never a redirect."""
    if request.form.get("List-Unsubscribe") != "One-Click":
        message = "the request must say List-Unsubscribe=One-Click"
        return _page(400, state="invalid", message=message)
    if not query.token:
        return _page(400, state="invalid", message="this unsubscribe link is not complete")
    result = tools.unsubscribe(query.token)
    if not result["success"]:
        return _page(400, state="invalid", message=result["error"]["message"])
    return _page(200, state="done", email=result["email"])
