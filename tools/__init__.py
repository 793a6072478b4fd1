"""The deterministic tool functions: every side effect of the service happens here.

JSON-serialisable values in and out; expected failures come back as results with an error
code, never as exceptions (`tools/boundary.py`). `TOOL_SCHEMAS` holds the JSON schema of each
function a model may be given.
"""

from typing import Any

from persistence.states import AttemptOutcome, CorrectionAction, ExecutionStatus
from tools.addresses import describe_address
from tools.boundary import ToolFunction, tool_function
from tools.circuits import record_circuit_result, validate_circuits
from tools.crm_context import get_crm_context
from tools.engagement import collect_metrics, fold_waiting_events, receive_webhook
from tools.engagement_evaluation import evaluate_engagement
from tools.errors import ToolFailure, echo
from tools.execution_detail import get_execution_detail
from tools.health import readiness
from tools.metrics import (
    get_engagement_metrics,
    get_send_history,
    provider_health,
)
from tools.operator_actions import (
    acknowledge_escalation,
    list_escalations,
    list_suppressions,
    remove_suppression,
)
from tools.overview import get_workspace_overview
from tools.performance import provider_performance
from tools.reputation import check_reputation, lift_sending_pause
from tools.runtime import configure, get_runtime, shutdown
from tools.schemas import ValidateEmailArgs
from tools.self_correction import self_correct
from tools.send import send_due_emails, send_email, send_queued_emails
from tools.send_again import send_again
from tools.stalled_sends import escalate_stalled_sends
from tools.status import get_email_status
from tools.suppression import describe_unsubscribe, is_suppressed, suppress, unsubscribe
from tools.workspaces import (
    create_workspace,
    get_workspace,
    rotate_api_key,
    update_workspace,
    workspace_for_api_key,
)


def _invalid(arguments: Any, failure: ToolFailure) -> dict[str, Any]:
    return {
        "email": echo(arguments.get("email")),
        "valid": False,
        "error": failure.message,
        "error_code": "invalid_input",
    }


@tool_function(ValidateEmailArgs, on_failure=_invalid)
def validate_email(args: ValidateEmailArgs) -> dict[str, Any]:
    """Check an address: `{email, valid, normalized, local, domain, ascii_email, smtputf8}`
    or `{email, valid: false, error, error_code}`."""
    return describe_address(
        args.email, check_deliverability=get_runtime().settings.check_deliverability
    )


_JSON_TOOLS: tuple[ToolFunction[Any, Any], ...] = (
    create_workspace,
    record_circuit_result,
    validate_circuits,
    validate_email,
    send_email,
    get_email_status,
    get_execution_detail,
    get_crm_context,
    self_correct,
    suppress,
    is_suppressed,
    unsubscribe,
    describe_unsubscribe,
    rotate_api_key,
    get_workspace,
    update_workspace,
    get_engagement_metrics,
    get_send_history,
    provider_performance,
    provider_health,
    collect_metrics,
    evaluate_engagement,
    check_reputation,
    lift_sending_pause,
    list_suppressions,
    remove_suppression,
    list_escalations,
    acknowledge_escalation,
    send_again,
    get_workspace_overview,
)
TOOL_SCHEMAS: dict[str, dict[str, Any]] = {tool.__name__: tool.schema for tool in _JSON_TOOLS}

__all__ = [
    "TOOL_SCHEMAS",
    "AttemptOutcome",
    "CorrectionAction",
    "ExecutionStatus",
    "acknowledge_escalation",
    "check_reputation",
    "collect_metrics",
    "configure",
    "create_workspace",
    "describe_unsubscribe",
    "escalate_stalled_sends",
    "evaluate_engagement",
    "fold_waiting_events",
    "get_crm_context",
    "get_email_status",
    "get_engagement_metrics",
    "get_execution_detail",
    "get_runtime",
    "get_send_history",
    "get_workspace",
    "get_workspace_overview",
    "is_suppressed",
    "lift_sending_pause",
    "list_escalations",
    "list_suppressions",
    "provider_health",
    "provider_performance",
    "readiness",
    "receive_webhook",
    "record_circuit_result",
    "remove_suppression",
    "rotate_api_key",
    "self_correct",
    "send_again",
    "send_due_emails",
    "send_email",
    "send_queued_emails",
    "shutdown",
    "suppress",
    "unsubscribe",
    "update_workspace",
    "validate_circuits",
    "validate_email",
    "workspace_for_api_key",
]
