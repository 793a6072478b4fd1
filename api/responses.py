"""How tool results become HTTP responses: one table from error code to status, and the one
JSON error shape `{"success": false, "error": {...}}` every failure takes."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from pydantic import ValidationError

from tools.boundary import RETRY_LATER_SECONDS
from tools.errors import ErrorCode
from tools.schemas import first_failure

STATUS_BY_CODE: dict[str, int] = {
    ErrorCode.MISSING_FIELD: 400,
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.INVALID_RECIPIENT: 400,
    ErrorCode.HEADER_INJECTION: 400,
    ErrorCode.CONTENT_TOO_LARGE: 400,
    ErrorCode.ATTACHMENT_REJECTED: 400,
    ErrorCode.INVALID_SIGNATURE: 401,
    ErrorCode.CIRCUIT_VALIDATION_FAILED: 403,
    ErrorCode.CONTENT_MISMATCH: 403,
    ErrorCode.SUPPRESSED: 403,
    ErrorCode.RATE_LIMIT_EXCEEDED: 403,
    ErrorCode.COMPLAINT_RATE_EXCEEDED: 403,
    ErrorCode.RECIPIENT_THROTTLED: 403,
    ErrorCode.UNKNOWN_WORKSPACE: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.DUPLICATE_SEND: 409,
    ErrorCode.ALREADY_ACKNOWLEDGED: 409,
    ErrorCode.NOT_RESENDABLE: 409,
    ErrorCode.RECIPIENT_REJECTED: 400,  # the address does not exist: no retry can help
    ErrorCode.ALL_PROVIDERS_FAILED: 500,
    ErrorCode.DELIVERY_UNCONFIRMED: 500,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.WEBHOOK_NOT_CONFIGURED: 503,
    # The database is away: try again later (`Retry-After`). After a hand-over whose outcome
    # went unrecorded, a retry is still safe: it returns this send, never a second one.
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.DELIVERY_UNRECORDED: 503,
}


def status_for(result: dict[str, Any], ok: int = 200) -> int:
    """The HTTP status of a tool result: `ok` without an error, else by its error code."""
    error = result.get("error")
    if not error:
        return ok
    return STATUS_BY_CODE.get(error.get("code"), 500)


def tool_response(
    result: dict[str, Any], ok: int = 200, *, status: int | None = None
) -> tuple[Response, int]:
    """A tool result as JSON, with `success` set and `status`, else the one its error code
    maps to (`ok` without an error)."""
    status = status or status_for(result, ok)
    response = jsonify({**result, "success": status < 400})
    retry_after = (result.get("error") or {}).get("retry_after_seconds")
    if status == 503 and retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response, status


def send_response(result: dict[str, Any]) -> tuple[Response, int]:
    """A send result: 202 when this request queued or scheduled it; 409 for a repeat, whatever
    the first send became; otherwise 200 sent or its error's status. A delivery that failed at
    every provider is 500 as seed 001 has it, whatever CX08 decided (the body says: rescheduled,
    with `scheduled_for`, or escalated); the send is kept, so a client must not send it again,
    and a retry of the same request is safe (409 with this result). A queued send's answer
    names its status URL (`Location`)."""
    accepted = result["status"] in ("scheduled", "queued") and not result.get("error")
    response, status = tool_response(result, status=202 if accepted else None)
    if accepted and result["status"] == "queued":
        response.headers["Location"] = f"/api/email/status/{result['email_id']}"
        response.headers["Preference-Applied"] = "respond-async"
    return response, status


def error_response(status: int, code: str, message: str, **details: Any) -> Response:
    """The JSON error body, for failures the API finds itself (auth, routing, size)."""
    response = jsonify({"success": False, "error": {"code": code, "message": message, **details}})
    response.status_code = status
    return response


def storage_unavailable() -> Response:
    """A database that cannot be reached outside a tool (the API key lookup, say): 503."""
    response = error_response(
        503,
        ErrorCode.STORAGE_UNAVAILABLE.value,
        "the database could not be reached; try again shortly",
    )
    response.headers["Retry-After"] = str(RETRY_LATER_SECONDS)
    return response


def validation_error(error: ValidationError) -> Response:
    """A request that does not fit its model: 400 with the tools' error code for it."""
    if all(not item["loc"] for item in error.errors()):
        return error_response(400, "invalid_input", "the request body must be a JSON object")
    failure = first_failure(error)
    return error_response(400, failure.code.value, failure.message, **failure.details)
