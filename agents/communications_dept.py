"""CommunicationsDept: delegates one send from a `SendRequest` to the team.

Without a model it is scripted: the request's first candidate. With a model it may pick which
candidate (an approved execution and its recipient) to delegate and write a note, through one
tool, `delegate_send(candidate, note)`, that takes no content. Subject, bodies, headers and
addresses always come from the request (checked by `send_email` against CX06's output), so
nothing a model says can reach the wire; a call that does not fit the tool delegates nothing.

Before it decides, it reads each candidate's CRM context (`get_crm_context`: the recipient
as a contact, the request's client as an organization). A model is shown it; the job carries
the chosen candidate's to the rest of the team and the transcript. It informs, never writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, StructuredMessage
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import ChatCompletionClient, SystemMessage, UserMessage
from autogen_core.tools import ParametersSchema, ToolSchema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import tools
from agents.messages import SendJob, SendRequest
from agents.tooling import ServiceTool, call_tool, latest, structured


class _Delegation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    candidate: int = Field(ge=0)
    note: str | None = Field(default=None, max_length=500)


DELEGATE_TOOL = ToolSchema(
    name="delegate_send",
    description=(
        "Delegate one of the listed approved sends to the email team. Takes the candidate's "
        "number and an optional note for the record; the email's content is fixed upstream."
    ),
    parameters=ParametersSchema(
        type="object",
        properties={
            "candidate": {"type": "integer", "minimum": 0},
            "note": {"type": "string", "maxLength": 500},
        },
        required=["candidate"],
        additionalProperties=False,
    ),
)

_INSTRUCTIONS = (
    "You are the communications department. Choose which approved send to delegate by calling "
    "delegate_send with its candidate number; you may add a short note for the record. You "
    "cannot change any email's subject, body, headers or recipients."
)


class CommunicationsDept(BaseChatAgent):
    def __init__(
        self, model_client: ChatCompletionClient | None = None, name: str = "CommunicationsDept"
    ) -> None:
        super().__init__(name, "Delegates approved sends to the email team.")
        self._model_client = model_client
        self._crm = ServiceTool(tools.get_crm_context)

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (StructuredMessage[SendJob],)

    async def on_messages(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> Response:
        request = latest(messages, SendRequest)
        if request is None:
            job = SendJob(
                delegated=False,
                reason="no send request in the task",
                decided_by="script",
                workspace_id="",
                client_id="",
            )
            return Response(chat_message=structured(job, self.name))
        contexts, events = await self._crm_contexts(request)
        if self._model_client is None:
            job = _job(request, 0, None, "script", "scripted: the request's first candidate")
        else:
            job = await self._ask_model(request, contexts, cancellation_token)
        if job.delegated and job.recipient is not None:
            job = job.model_copy(update={"crm_context": contexts[job.recipient]})
        return Response(chat_message=structured(job, self.name), inner_messages=events)

    async def _crm_contexts(
        self, request: SendRequest
    ) -> tuple[dict[str, dict[str, Any]], list[Any]]:
        """Each candidate recipient's CRM context (empty where the lookup failed: context
        is never a reason not to send), and the tool calls that read them."""
        contexts: dict[str, dict[str, Any]] = {}
        events: list[Any] = []
        for recipient in dict.fromkeys(c.recipient for c in request.candidates):
            arguments = {
                "workspace_id": request.workspace_id,
                "recipient": recipient,
                "client_id": request.client_id,
            }
            result, calls = await call_tool(self._crm, arguments, self.name)
            contexts[recipient] = result.get("crm_context") or {}
            events.extend(calls)
        return contexts, events

    async def _ask_model(
        self,
        request: SendRequest,
        contexts: dict[str, dict[str, Any]],
        cancellation_token: CancellationToken,
    ) -> SendJob:
        assert self._model_client is not None
        listing = "\n".join(
            f"{i}: execution {c.circuit_execution_id} to {c.recipient}; CRM context: "
            f"{json.dumps(contexts[c.recipient], sort_keys=True)}"
            for i, c in enumerate(request.candidates)
        )
        try:
            answer = await self._model_client.create(
                [
                    SystemMessage(content=_INSTRUCTIONS),
                    UserMessage(content=f"Approved sends:\n{listing}", source="user"),
                ],
                tools=[DELEGATE_TOOL],
                cancellation_token=cancellation_token,
            )
        except Exception as error:  # a model outage delegates nothing; it never breaks the team
            return _refused(request, f"the model could not be asked ({type(error).__name__})")
        calls = answer.content if isinstance(answer.content, list) else []
        call = next(
            (c for c in calls if isinstance(c, FunctionCall) and c.name == "delegate_send"), None
        )
        if call is None:
            return _refused(request, "the model did not call delegate_send")
        try:
            choice = _Delegation.model_validate(_json_object(call.arguments))
        except (ValueError, ValidationError):
            return _refused(request, "the model's delegate_send call did not fit the tool")
        if choice.candidate >= len(request.candidates):
            return _refused(request, f"the model chose candidate {choice.candidate}, not offered")
        return _job(request, choice.candidate, choice.note, "model", "chosen by the model")

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        pass


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _job(
    request: SendRequest, index: int, note: str | None, decided_by: str, reason: str
) -> SendJob:
    candidate = request.candidates[index]
    return SendJob(
        delegated=True,
        reason=reason,
        note=note,
        decided_by=decided_by,
        workspace_id=request.workspace_id,
        client_id=request.client_id,
        circuit_execution_id=candidate.circuit_execution_id,
        recipient=candidate.recipient,
        final_asset=request.final_asset,
        cc=request.cc,
        bcc=request.bcc,
        attachments=request.attachments,
    )


def _refused(request: SendRequest, reason: str) -> SendJob:
    return SendJob(
        delegated=False,
        reason=reason,
        decided_by="model",
        workspace_id=request.workspace_id,
        client_id=request.client_id,
    )
