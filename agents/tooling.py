"""Tool functions as AutoGen tools, and running one call deterministically.

`ServiceTool` is an AutoGen tool over a function from `tools`: its schema is the function's own
arguments model (the one in `tools.TOOL_SCHEMAS`), and a call goes through the function's own
boundary (`ToolFunction.call_json`), so a model sees, and gets, the same strict contract a
direct caller does: arguments that do not fit are the tool's error result, not an exception.
`call_tool` runs one call and returns its result together with the `ToolCallRequestEvent` /
`ToolCallExecutionEvent` pair that records it in the transcript.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from autogen_agentchat.messages import (
    BaseChatMessage,
    StructuredMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import FunctionExecutionResult
from autogen_core.tools import BaseTool
from pydantic import BaseModel

from tools.boundary import ToolFunction

M = TypeVar("M", bound=BaseModel)


class ServiceTool(BaseTool[BaseModel, Any]):
    """A tool function as an AutoGen tool (see the module's note)."""

    def __init__(self, function: ToolFunction[Any, Any]) -> None:
        super().__init__(function.model, dict, function.__name__, function.schema["description"])
        self._function = function

    async def run(self, args: BaseModel, cancellation_token: CancellationToken) -> Any:
        return await self.run_json(args.model_dump(exclude_unset=True), cancellation_token)

    async def run_json(
        self,
        args: Mapping[str, Any],
        cancellation_token: CancellationToken,
        call_id: str | None = None,
    ) -> Any:
        return await asyncio.to_thread(self._function.call_json, args)


async def call_tool(
    tool: BaseTool[Any, Any], arguments: dict[str, Any], source: str
) -> tuple[dict[str, Any], list[ToolCallRequestEvent | ToolCallExecutionEvent]]:
    """Run `tool` with `arguments`; an exception becomes an error result, never a raise."""
    call = FunctionCall(id=uuid.uuid4().hex, name=tool.name, arguments=json.dumps(arguments))
    try:
        result = await tool.run_json(arguments, CancellationToken(), call_id=call.id)
        is_error = False
    except Exception as error:  # an agent that raises breaks the whole team (see the notes)
        result = {"error": {"code": "internal_error", "message": type(error).__name__}}
        is_error = True
    if not isinstance(result, dict):
        result = {"value": result}
    events: list[ToolCallRequestEvent | ToolCallExecutionEvent] = [
        ToolCallRequestEvent(content=[call], source=source),
        ToolCallExecutionEvent(
            content=[
                FunctionExecutionResult(
                    content=json.dumps(result, default=str),
                    name=tool.name,
                    call_id=call.id,
                    is_error=is_error,
                )
            ],
            source=source,
        ),
    ]
    return result, events


def latest(messages: Any, model: type[M]) -> M | None:
    """The newest `model` payload among `messages` (never trust the last message's type)."""
    for message in reversed(list(messages)):
        if isinstance(message, StructuredMessage) and isinstance(message.content, model):
            return message.content
    return None


def structured(payload: BaseModel, source: str) -> BaseChatMessage:
    return StructuredMessage[type(payload)](content=payload, source=source)  # type: ignore[misc]
