"""Tool functions as AutoGen `FunctionTool`s, and running one call deterministically.

`ServiceTool` is a `FunctionTool` over a function from `tools` that advertises that
function's own JSON schema (`tools.TOOL_SCHEMAS`), so a model sees the same strict contract
a direct caller gets. `call_tool` runs one call and returns its result together with the
`ToolCallRequestEvent` / `ToolCallExecutionEvent` pair that records it in the transcript.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import jsonref
from autogen_agentchat.messages import (
    BaseChatMessage,
    StructuredMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import FunctionExecutionResult
from autogen_core.tools import FunctionTool, ParametersSchema, ToolSchema
from pydantic import BaseModel

from tools import TOOL_SCHEMAS

M = TypeVar("M", bound=BaseModel)


class ServiceTool(FunctionTool):
    """A tool function, advertised with its own schema from `tools.TOOL_SCHEMAS`."""

    def __init__(self, func: Callable[..., Any]) -> None:
        name = func.__name__
        super().__init__(func, description=TOOL_SCHEMAS[name]["description"], name=name)

    @property
    def schema(self) -> ToolSchema:
        declared = TOOL_SCHEMAS[self.name]
        # Inline the pydantic $defs, as FunctionTool does, for clients that cannot follow refs.
        parameters = jsonref.replace_refs(declared["parameters"], proxies=False)
        parameters.pop("$defs", None)
        return ToolSchema(
            name=self.name,
            description=declared["description"],
            parameters=ParametersSchema(
                type="object",
                properties=parameters["properties"],
                required=parameters.get("required", []),
                additionalProperties=False,
            ),
            strict=False,
        )


async def call_tool(
    tool: FunctionTool, arguments: dict[str, Any], source: str
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
