"""Workspace API keys: `Authorization: Bearer ek_...` on every route but unsubscribe and the
webhooks. A key sees its own workspace only; naming another one is 403."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, abort, g, request
from flask_openapi3 import APIBlueprint, Tag

import tools
from api.responses import error_response
from tools.workspaces import hash_api_key

SECURITY_SCHEMES = {
    "workspaceKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The workspace API key create_workspace returned (ek_...)",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "EMAIL_METRICS_TOKEN, for /metrics only",
    },
}


def protected_blueprint(
    name: str, url_prefix: str, tag: Tag, responses: dict[int, Any]
) -> APIBlueprint:
    """A blueprint whose every route needs a workspace key: documented in the OpenAPI spec and
    enforced by `authenticate`, together, so neither can be forgotten without the other."""
    blueprint = APIBlueprint(
        name,
        f"api.{name}",
        url_prefix=url_prefix,
        abp_tags=[tag],
        abp_security=[{"workspaceKey": []}],
        abp_responses=responses,
    )
    blueprint.before_request(authenticate)
    return blueprint


def authenticate() -> Response | None:
    """`before_request` of the protected blueprints: 401 unless the key is a workspace's."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    workspace_id = tools.workspace_for_api_key(key.strip()) if scheme.lower() == "bearer" else None
    if workspace_id is None:
        response = error_response(
            401, "unauthorized", "a valid workspace API key is required (Authorization: Bearer)"
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    g.workspace_id = workspace_id
    # Which key did what, for the operator actions' record: never the key itself.
    g.key_fingerprint = hash_api_key(key.strip())[:12]
    # Checked before the body is even parsed: naming another workspace is refused outright,
    # also as a second `workspaceId` that request parsing would not look at.
    for value in request.args.getlist("workspaceId"):
        requested = _canonical_uuid(value)
        if requested is not None and requested != workspace_id:
            return _forbidden()
    return None


def own_workspace(requested: str | None) -> str:
    """The caller's workspace; a `workspaceId` naming any other is refused with 403."""
    if requested is not None and requested != g.workspace_id:
        abort(_forbidden())
    return g.workspace_id


def _forbidden() -> Response:
    return error_response(403, "forbidden", "this API key does not belong to that workspace")


def _canonical_uuid(value: str | None) -> str | None:
    """The canonical form of a UUID parameter; None when absent or malformed (a malformed one
    is left to request validation, which answers 400)."""
    try:
        return str(uuid.UUID(value)) if value is not None else None
    except ValueError:
        return None
