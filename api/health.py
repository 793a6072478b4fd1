"""`/healthz` (the process answers) and `/readyz` (the database answers; the broker too, once
one is configured): for load balancers and orchestrators, so open, cheap and revealing nothing
but which part is not ready."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

import tools

health = APIBlueprint(
    "health",
    __name__,
    abp_tags=[Tag(name="health", description="Liveness and readiness probes (no API key)")],
)

_STATUS = {
    "type": "object",
    "properties": {
        "status": {"type": "string"},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _json(description: str) -> dict[str, object]:
    return {"description": description, "content": {"application/json": {"schema": _STATUS}}}


@health.get("/healthz", responses={200: _json("The process answers")})
def healthz() -> Response:
    """Liveness: the process answers requests."""
    return _no_store(jsonify(status="ok"))


@health.get(
    "/readyz",
    responses={
        200: _json("Every part answers"),
        503: _json("A part does not answer (named in `checks`)"),
    },
)
def readyz() -> Response:
    """Readiness: the database answers, and the broker when CELERY_BROKER_URL is set."""
    parts = tools.readiness()
    checks = {name: "ok" if ready else "unavailable" for name, ready in parts.items()}
    ready = all(parts.values())
    response = jsonify(status="ready" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return _no_store(response)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
