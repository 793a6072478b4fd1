"""The group chat: CommunicationsDept -> CircuitValidatorAgent -> EmailAgent -> SelfCorrectionAgent.

A `GraphFlow` rather than a SelectorGroupChat: the route is a pipeline with two exits (a
verdict that fails ends the chat before anything is sent; a send that needs no correction ends
it after the EmailAgent), and a graph states that in its edges, needs no model, and ends by
itself when no edge fires. A message cap is the safety net. The team is built per run, inside
the coroutine that runs it (a team is bound to its first event loop and cannot run twice at
once), and every run's transcript is stored with the execution it concerns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from autogen_agentchat.base import TaskResult
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, StructuredMessage
from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
from autogen_core.models import ChatCompletionClient
from pydantic import BaseModel, ValidationError

from agents import CircuitValidatorAgent, CommunicationsDept, EmailAgent, SelfCorrectionAgent
from agents.messages import CircuitVerdict, Correction, SendJob, SendOutcome, SendRequest
from agents.tooling import latest
from tools.transcripts import store_transcript

T = TypeVar("T")
MAX_MESSAGES = 20


def _when(model: type[BaseModel], test: Callable[[Any], bool]) -> Callable[[BaseChatMessage], bool]:
    def condition(message: BaseChatMessage) -> bool:
        return (
            isinstance(message, StructuredMessage)
            and isinstance(message.content, model)
            and test(message.content)
        )

    return condition


def build_team(model_client: ChatCompletionClient | None = None) -> GraphFlow:
    comms = CommunicationsDept(model_client)
    validator = CircuitValidatorAgent()
    email = EmailAgent()
    correction = SelfCorrectionAgent()
    graph = DiGraphBuilder()
    for agent in (comms, validator, email, correction):
        graph.add_node(agent)
    graph.add_edge(comms, validator, condition=_when(SendJob, lambda job: job.delegated))
    graph.add_edge(
        validator, email, condition=_when(CircuitVerdict, lambda v: v.all_required_passed)
    )
    graph.add_edge(email, correction, condition=_when(SendOutcome, lambda o: o.needs_correction))
    graph.set_entry_point(comms)
    return GraphFlow(
        graph.get_participants(),
        graph=graph.build(),
        termination_condition=MaxMessageTermination(MAX_MESSAGES),
        custom_message_types=[StructuredMessage[SendRequest]],
    )


@dataclass
class ChatRun:
    """One run of the group chat: the typed hand-offs, the transcript and why it stopped."""

    request: SendRequest | None
    stop_reason: str
    messages: list[BaseAgentEvent | BaseChatMessage] = field(default_factory=list)
    error: str | None = None
    transcript_id: str | None = None

    @property
    def job(self) -> SendJob | None:
        return latest(self.messages, SendJob)

    @property
    def verdict(self) -> CircuitVerdict | None:
        return latest(self.messages, CircuitVerdict)

    @property
    def outcome(self) -> SendOutcome | None:
        return latest(self.messages, SendOutcome)

    @property
    def correction(self) -> Correction | None:
        return latest(self.messages, Correction)

    @property
    def sent(self) -> bool:
        return self.outcome is not None and self.outcome.sent

    def transcript(self) -> list[dict[str, Any]]:
        """The messages as JSON-ready dicts (the stored audit record)."""
        return [
            {"kind": type(m).__name__, **m.model_dump(mode="json", exclude={"models_usage"})}
            for m in self.messages
        ]


async def run_send(
    request: SendRequest | dict[str, Any], model_client: ChatCompletionClient | None = None
) -> ChatRun:
    """Run the group chat for one send request; never raises for a failed send or agent."""
    try:
        request = SendRequest.model_validate(request)
    except ValidationError as error:
        return ChatRun(None, "invalid request", error=str(error.errors()[0]["msg"]))
    team = build_team(model_client)
    task = StructuredMessage[SendRequest](content=request, source="user")
    try:
        result: TaskResult = await team.run(task=task)
        run = ChatRun(request, result.stop_reason or "", list(result.messages))
    except Exception as error:  # an agent failure surfaces here as RuntimeError
        run = ChatRun(request, "team error", [task], error=type(error).__name__)
    job, outcome = run.job, run.outcome
    run.transcript_id = await asyncio.to_thread(
        store_transcript,
        request.workspace_id,
        job.circuit_execution_id if job else None,
        outcome.email_id if outcome else None,
        run.stop_reason,
        run.transcript(),
    )
    return run


def run_send_sync(
    request: SendRequest | dict[str, Any], model_client: ChatCompletionClient | None = None
) -> ChatRun:
    """`run_send` for synchronous callers, also inside Jupyter's running event loop."""
    return run_sync(lambda: run_send(request, model_client))


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # A loop is already running (Jupyter): run on a fresh loop in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
