"""CircuitValidatorAgent: asks `validate_circuits` whether CX01-CX06 passed for the job.

The job's CRM context goes into the verdict, so the transcript shows what the validator was
told; only the circuits decide it."""

from __future__ import annotations

from collections.abc import Sequence

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, StructuredMessage
from autogen_core import CancellationToken

import tools
from agents.messages import CircuitVerdict, SendJob
from agents.tooling import ServiceTool, call_tool, latest, structured


class CircuitValidatorAgent(BaseChatAgent):
    def __init__(self, name: str = "CircuitValidatorAgent") -> None:
        super().__init__(name, "Checks that circuits CX01-CX06 all passed for an execution.")
        self._tool = ServiceTool(tools.validate_circuits)

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (StructuredMessage[CircuitVerdict],)

    async def on_messages(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> Response:
        job = latest(messages, SendJob)
        if job is None or not job.delegated:
            verdict = CircuitVerdict(all_required_passed=False, error="no delegated job")
            return Response(chat_message=structured(verdict, self.name))
        result, events = await call_tool(
            self._tool,
            {"workspace_id": job.workspace_id, "circuit_execution_id": job.circuit_execution_id},
            self.name,
        )
        error = result.get("error")
        verdict = CircuitVerdict(
            all_required_passed=bool(result.get("all_required_passed")),
            circuits_passed=result.get("circuits_passed", []),
            missing_circuits=result.get("missing_circuits", []),
            failed_circuits=result.get("failed_circuits", []),
            error=error.get("message") if isinstance(error, dict) else None,
            crm_context=job.crm_context,
        )
        return Response(chat_message=structured(verdict, self.name), inner_messages=events)

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass
