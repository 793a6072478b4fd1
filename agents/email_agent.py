"""EmailAgent: the tool agent. It owns send_email, validate_email and get_email_status.

It runs the one call a `SendJob` stands for, with arguments taken from the job (never from a
model), records the call and its result as tool events, and answers with a `SendOutcome`.
"""

from __future__ import annotations

from collections.abc import Sequence

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, StructuredMessage
from autogen_core import CancellationToken

import tools
from agents.messages import CircuitVerdict, SendJob, SendOutcome
from agents.tooling import ServiceTool, call_tool, latest, structured
from tools import ExecutionStatus


class EmailAgent(BaseChatAgent):
    # Seed 000's interface on the agent itself (its section 3.1): the same tool functions the
    # chat calls, with their signatures, so a script can use the agent without a team. The
    # seed's `send_email(to, subject, body)` is circuit-bound here: it takes the approved
    # execution and asset, as every send does.
    send_email = staticmethod(tools.send_email)
    validate_email = staticmethod(tools.validate_email)
    get_email_status = staticmethod(tools.get_email_status)

    def __init__(self, name: str = "EmailAgent") -> None:
        super().__init__(name, "Sends an approved email through the deterministic send tool.")
        self._tools = {
            tool.name: tool
            for tool in (
                ServiceTool(tools.send_email),
                ServiceTool(tools.validate_email),
                ServiceTool(tools.get_email_status),
            )
        }

    @property
    def tools(self) -> list[ServiceTool]:
        return list(self._tools.values())

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (StructuredMessage[SendOutcome],)

    async def on_messages(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> Response:
        job = latest(messages, SendJob)
        verdict = latest(messages, CircuitVerdict)
        if job is None or not job.delegated or verdict is None or not verdict.all_required_passed:
            outcome = SendOutcome(sent=False, message="no approved, delegated job to send")
            return Response(chat_message=structured(outcome, self.name))
        result, events = await call_tool(self._tools["send_email"], job.send_arguments(), self.name)
        error = result.get("error") or {}
        status = result.get("status")  # absent only when the tool itself raised
        outcome = SendOutcome(
            sent=status == ExecutionStatus.SENT,
            status=status,
            email_id=result.get("email_id"),
            error_code=error.get("code"),
            message=str(result.get("message") or error.get("message") or ""),
            needs_correction="self_correction" in result,
            result=result,
        )
        return Response(chat_message=structured(outcome, self.name), inner_messages=events)

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass
