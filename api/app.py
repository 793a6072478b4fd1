"""The Flask application factory: the OpenAPI app, its blueprints, JSON errors, size limits."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify, redirect, url_for
from flask.json.provider import DefaultJSONProvider
from flask_openapi3 import Info, OpenAPI
from werkzeug.exceptions import BadRequest, HTTPException

import tools
from api.auth import SECURITY_SCHEMES
from api.circuits import circuits
from api.console import register_console
from api.email import email
from api.health import health
from api.operations import operations
from api.prometheus_metrics import prometheus
from api.responses import error_response, storage_unavailable, validation_error
from api.schemas import ErrorResponse
from api.unsubscribe import unsubscribe
from api.webhooks import webhooks
from persistence import unavailable
from settings import Settings

log = logging.getLogger(__name__)


class _JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a body nested beyond what the parser can follow refused as a 400
    (`[` a thousand times is 2 KB) instead of a RecursionError answered 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            log.warning("request refused: JSON nested too deeply")
            message = "the request body is JSON nested too deeply"
            raise BadRequest(response=error_response(400, "invalid_input", message)) from None


def create_app(settings: Settings | None = None) -> OpenAPI:
    """The HTTP API. With `settings`, the tools are (re)configured from them; without, the
    current runtime is used (built from the environment on first use)."""
    runtime = tools.configure(settings) if settings is not None else tools.get_runtime()
    app = OpenAPI(
        __name__,
        info=Info(
            title="Circuit-bound email execution",
            version="1.0.0",
            description="Sends CX06's approved email once CX01-CX06 passed, the recipient is "
            "allowed and the limits hold.",
        ),
        security_schemes=SECURITY_SCHEMES,
        validation_error_status=400,
        validation_error_model=ErrorResponse,
        validation_error_callback=validation_error,
        doc_prefix="/docs",
    )
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.api_max_request_bytes
    app.json = _JSONProvider(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in (circuits, email, operations, webhooks, unsubscribe, health, prometheus):
        app.register_api(blueprint)
    register_console(app, runtime)
    app.add_url_rule("/openapi.json", "openapi_json", lambda: jsonify(app.api_doc))
    # flask-openapi3's /docs/ is a page of one tile (the one UI installed): go to it.
    app.view_functions["openapi.openapi"] = lambda: redirect(url_for("swagger.swagger"))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _http_error(error: HTTPException) -> Response:
    if error.response is not None:  # an abort() that already carries its JSON response
        return error.response  # type: ignore[return-value]
    code = (error.name or "error").lower().replace(" ", "_")
    return error_response(error.code or 500, code, error.description or code)


def _unexpected_error(error: Exception) -> Response:
    if unavailable(error):
        log.warning("database unavailable", extra={"error_type": type(error).__name__})
        return storage_unavailable()
    log.exception("unhandled error in a request")
    return error_response(500, "internal_error", "the server could not complete this request")
