"""A group-chat run as readable text: who said what, which tool ran and what it returned."""

from __future__ import annotations

import json
from typing import Any

from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    StructuredMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)

from agents.messages import CircuitVerdict, Correction, SendJob, SendOutcome, SendRequest

_WIDTH = 240
# Fields a reader of the conversation knows already: the ids every call carries, and those a
# result repeats from its call. Left out, so that a line shows what the tool said.
_KNOWN_TO_CALLS = ("workspace_id", "client_id")
_KNOWN_TO_RESULTS = (*_KNOWN_TO_CALLS, "circuit_execution_id", "recipient", "timestamp")
# What a result's reader looks for first, when the tool's result has it.
_VERDICT_FIRST = ("all_required_passed", "status", "action", "error", "message", "email_id")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _without(text: str, known: tuple[str, ...]) -> str:
    """A tool call's or result's JSON without the fields the reader knows already or that say
    nothing (null, empty), its verdict first."""
    try:
        value = json.loads(text)
    except ValueError:
        return _short(text)
    if isinstance(value, dict):
        kept = {
            name: field
            for name, field in value.items()
            if name not in known and field not in (None, [], "")
        }
        first = {name: kept.pop(name) for name in _VERDICT_FIRST if name in kept}
        value = {**first, **kept}
    return _short(value)


def _describe(content: Any) -> str:
    if isinstance(content, SendRequest):
        choices = (f"{c.circuit_execution_id} -> {c.recipient}" for c in content.candidates)
        return f"please send one of: {', '.join(choices)}"
    if isinstance(content, SendJob):
        if not content.delegated:
            return f"delegates nothing: {content.reason}"
        note = f" (note: {content.note})" if content.note else ""
        return (
            f"delegates {content.circuit_execution_id} -> {content.recipient} "
            f"[{content.decided_by}]{note}"
        )
    if isinstance(content, CircuitVerdict):
        if content.all_required_passed:
            return "CX01-CX06 all passed"
        missing = ", ".join(content.missing_circuits) or "-"
        failed = ", ".join(content.failed_circuits) or "-"
        return f"NOT approved: missing {missing}; failed {failed}"
    if isinstance(content, SendOutcome):
        code = f" [{content.error_code}]" if content.error_code else ""
        status = content.status or "not sent"
        return f"{status}{code}: {content.message} (email_id {content.email_id})"
    if isinstance(content, Correction):
        when = f", scheduled for {content.scheduled_for}" if content.scheduled_for else ""
        return f"CX08 {content.action}{when}: {content.reason}"
    return _short(str(content))


def render(messages: list[BaseAgentEvent | BaseChatMessage]) -> str:
    lines = []
    for message in messages:
        if isinstance(message, ToolCallRequestEvent):
            for call in message.content:
                arguments = _without(call.arguments, _KNOWN_TO_CALLS)
                lines.append(f"  {message.source} calls {call.name}({arguments})")
        elif isinstance(message, ToolCallExecutionEvent):
            for result in message.content:
                flag = " (error)" if result.is_error else ""
                said = _without(result.content, _KNOWN_TO_RESULTS)
                lines.append(f"  {message.source} <- {result.name}{flag}: {said}")
        elif isinstance(message, StructuredMessage):
            lines.append(f"{message.source}: {_describe(message.content)}")
        else:
            lines.append(f"{message.source}: {_short(str(getattr(message, 'content', '')))}")
    return "\n".join(lines)
