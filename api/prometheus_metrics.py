"""`/metrics`: the Prometheus exposition (`tools/service_metrics.py`). Not open to the world:
it answers only `Authorization: Bearer <EMAIL_METRICS_TOKEN>`, and is off (404) until that
token is set. The figures span every workspace, so no workspace key opens it."""

from __future__ import annotations

import hmac

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

import tools
from api.responses import error_response
from tools.service_metrics import AuditTrailCollector

prometheus = APIBlueprint(
    "prometheus",
    __name__,
    abp_tags=[Tag(name="metrics", description="Prometheus metrics (the metrics token)")],
)
_REGISTRY = CollectorRegistry(auto_describe=False)
_REGISTRY.register(AuditTrailCollector())


@prometheus.get(
    "/metrics",
    security=[{"metricsToken": []}],
    responses={
        200: {
            "description": "The metrics, Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        401: {"description": "No or a wrong metrics token"},
        404: {"description": "Metrics are off: EMAIL_METRICS_TOKEN is not set"},
    },
)
def metrics() -> Response:
    """Sends by status and provider, send duration, provider attempts by outcome, webhook
    events, open breakers and rows waiting; needs `Authorization: Bearer <EMAIL_METRICS_TOKEN>`."""
    token = tools.get_runtime().settings.metrics_token
    if token is None:
        return error_response(404, "not_found", "metrics are off: set EMAIL_METRICS_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = error_response(401, "unauthorized", "the metrics token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return Response(generate_latest(_REGISTRY), mimetype=CONTENT_TYPE_LATEST)
