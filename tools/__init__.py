"""The deterministic tool functions: every side effect of the service happens here.

JSON-serialisable values in and out; expected failures come back as results with an error
code, never as exceptions. `TOOL_SCHEMAS` holds each function's JSON schema.
"""

from tools.addresses import describe_address
from tools.circuits import record_circuit_result, validate_circuits
from tools.engagement import collect_metrics, fold_waiting_events, receive_webhook
from tools.errors import ToolFailure, echo
from tools.metrics import get_engagement_metrics, get_send_history, provider_performance
from tools.runtime import configure, get_runtime, shutdown
from tools.schemas import TOOL_SCHEMAS, ValidateEmailArgs, parse
from tools.self_correction import escalate_stalled_sends, self_correct
from tools.sending import send_due_emails, send_email
from tools.status import get_email_status
from tools.suppression import describe_unsubscribe, is_suppressed, suppress, unsubscribe
from tools.workspaces import create_workspace, rotate_api_key, workspace_for_api_key


def validate_email(email: str) -> dict:
    """Check an address: `{email, valid, normalized, local, domain, ascii_email, smtputf8}`
    or `{email, valid: false, error, error_code}`."""
    try:
        args = parse(ValidateEmailArgs, {"email": email})
    except ToolFailure as failure:
        return {
            "email": echo(email),
            "valid": False,
            "error": failure.message,
            "error_code": "invalid_input",
        }
    return describe_address(
        args.email, check_deliverability=get_runtime().settings.check_deliverability
    )


__all__ = [
    "TOOL_SCHEMAS",
    "collect_metrics",
    "configure",
    "create_workspace",
    "describe_unsubscribe",
    "escalate_stalled_sends",
    "fold_waiting_events",
    "get_email_status",
    "get_engagement_metrics",
    "get_runtime",
    "get_send_history",
    "is_suppressed",
    "provider_performance",
    "receive_webhook",
    "record_circuit_result",
    "rotate_api_key",
    "self_correct",
    "send_due_emails",
    "send_email",
    "shutdown",
    "suppress",
    "unsubscribe",
    "validate_circuits",
    "validate_email",
    "workspace_for_api_key",
]
