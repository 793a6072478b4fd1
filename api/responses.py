"""How tool results become HTTP responses: one table from error code to status, and the one
JSON error shape `{"success": false, "error": {...}}` every failure takes."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from pydantic import ValidationError

from tools.schemas import first_failure

_STATUS_BY_CODE: dict[str, int] = {
    "missing_field": 400,
    "invalid_input": 400,
    "invalid_recipient": 400,
    "header_injection": 400,
    "content_too_large": 400,
    "attachment_rejected": 400,
    "circuit_validation_failed": 403,
    "content_mismatch": 403,
    "suppressed": 403,
    "rate_limit_exceeded": 403,
    "recipient_throttled": 403,
    "unknown_workspace": 404,
    "not_found": 404,
    "duplicate_send": 409,
    "invalid_signature": 401,
    "all_providers_failed": 500,
    "delivery_unconfirmed": 500,
    "internal_error": 500,
    "webhook_not_configured": 503,
}


def status_for(result: dict[str, Any], ok: int = 200) -> int:
    """The HTTP status of a tool result: `ok` without an error, else by its error code."""
    error = result.get("error")
    if not error:
        return ok
    return _STATUS_BY_CODE.get(error.get("code"), 500)


def tool_response(result: dict[str, Any], ok: int = 200) -> tuple[Response, int]:
    """A tool result as JSON, with `success` set and the status its error code maps to."""
    status = status_for(result, ok)
    return jsonify({**result, "success": status < 400}), status


def send_response(result: dict[str, Any]) -> tuple[Response, int]:
    """A send result: 202 whenever it is scheduled, a delivery CX08 rescheduled after a
    failure included (it is accepted and will be tried again: a client must not resend);
    otherwise 200 sent, or the status of its error."""
    status = 202 if result["status"] == "scheduled" else status_for(result)
    return jsonify({**result, "success": status < 400}), status


def error_response(status: int, code: str, message: str, **details: Any) -> Response:
    """The JSON error body, for failures the API finds itself (auth, routing, size)."""
    response = jsonify({"success": False, "error": {"code": code, "message": message, **details}})
    response.status_code = status
    return response


def validation_error(error: ValidationError) -> Response:
    """A request that does not fit its model: 400 with the tools' error code for it."""
    if all(not item["loc"] for item in error.errors()):
        return error_response(400, "invalid_input", "the request body must be a JSON object")
    failure = first_failure(error)
    return error_response(400, failure.code.value, failure.message, **failure.details)
