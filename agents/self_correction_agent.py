"""SelfCorrectionAgent (CX08): reports the decision the deterministic rules took for a failure.

The send pipeline applies CX08 as it records a failed delivery; this agent asks
`self_correct` for that decision (reschedule or escalate) and answers with a `Correction`.
"""

from __future__ import annotations

from collections.abc import Sequence

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, StructuredMessage
from autogen_core import CancellationToken

import tools
from agents.messages import Correction, SendOutcome
from agents.tooling import ServiceTool, call_tool, latest, structured


class SelfCorrectionAgent(BaseChatAgent):
    def __init__(self, name: str = "SelfCorrectionAgent") -> None:
        super().__init__(name, "Applies the CX08 self-correction rules to a failed send.")
        self._tool = ServiceTool(tools.self_correct)

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (StructuredMessage[Correction],)

    async def on_messages(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> Response:
        outcome = latest(messages, SendOutcome)
        if outcome is None or outcome.email_id is None:
            correction = Correction(
                email_id=None, action="none", reason="no recorded send to correct"
            )
            return Response(chat_message=structured(correction, self.name))
        # With its workspace: the lookup stays in that workspace's scope (and finds no other's).
        arguments = {
            "email_id": outcome.email_id,
            "workspace_id": outcome.result.get("workspace_id"),
        }
        result, events = await call_tool(self._tool, arguments, self.name)
        correction = Correction(
            email_id=outcome.email_id,
            action=result.get("action", "none"),
            reason=str(result.get("reason") or (result.get("error") or {}).get("message", "")),
            status=result.get("status"),
            scheduled_for=result.get("scheduled_for"),
        )
        return Response(chat_message=structured(correction, self.name), inner_messages=events)

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass
