"""The edge of every public tool function: arguments parsed once, expected failures returned.

A tool is declared by its arguments model and a body that takes the parsed model:

    @tool_function(SuppressArgs)
    def suppress(args: SuppressArgs) -> dict[str, Any]: ...

The public function takes the model's fields as parameters, in the model's order
(`suppress(workspace_id, email, reason, bounce_type=None)`), and its JSON schema (`schema`,
what the EmailAgent advertises to a model) is the model's. Calling it parses the arguments
through the model (`tools.schemas.parse`: a None counts as not given), runs the body, and turns
the expected failures into the tool's documented error result (`on_failure`). A tool called
with a `workspace_id` runs in that workspace's scope (`persistence.tenancy`): on PostgreSQL its
transactions see no other workspace's rows, whatever its queries forget. Expected failures:
- a `ToolFailure`, raised by the parse or anywhere in the body;
- the database being unreachable (`storage_unavailable`, see `persistence.unavailable`). A
  body that commits more than once must handle that itself where a partial commit matters
  (the send pipeline does).
Anything else is a bug and propagates.
"""

from __future__ import annotations

import functools
import inspect
import logging
import operator
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from persistence import unavailable, workspace_scope
from tools.errors import ErrorCode, ToolFailure, echo, failure_result
from tools.schemas import parse

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
FailureResult = Callable[[Mapping[str, Any], ToolFailure], Any]

# Where a database that cannot be reached shows up; `persistence.unavailable` tells those
# from bugs (a missing table is an OperationalError on SQLite too).
DATABASE_ERRORS = (DBAPIError, PoolTimeoutError)
# How long a caller is told to wait before trying a database that was away again.
RETRY_LATER_SECONDS = 5


def storage_unavailable(error: Exception) -> ToolFailure:
    """The failure for a database that cannot be reached (`persistence.unavailable`). The
    error's own text is never shown: it may name the server, the user or a statement."""
    cause = getattr(error, "orig", None) or error
    log.warning("database unavailable", extra={"error_type": type(cause).__name__})
    return ToolFailure(
        ErrorCode.STORAGE_UNAVAILABLE,
        "the database could not be reached; nothing was changed, try again shortly",
        retry_after_seconds=RETRY_LATER_SECONDS,
    )


def default_failure(arguments: Mapping[str, Any], failure: ToolFailure) -> dict[str, Any]:
    """`{"success": false, "error": {...}}`: the error result of most tools."""
    return failure_result(failure)


def not_found_failure(arguments: Mapping[str, Any], failure: ToolFailure) -> dict[str, Any]:
    """The error result of a lookup by `email_id`: `{email_id, found: false, error}`."""
    return {
        "email_id": echo(arguments.get("email_id")),
        "found": False,
        "error": failure.error_dict(),
    }


class ToolFunction(Generic[M, R]):
    """A public tool function: call it with the model's fields, or `call_json` with a dict."""

    def __init__(self, model: type[M], body: Callable[[M], R], on_failure: FailureResult) -> None:
        functools.update_wrapper(self, body)
        self.model = model
        self._body = body
        self._on_failure = on_failure
        self.__signature__ = _public_signature(model, body)
        self._names = tuple(model.model_fields)

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        # What `Signature.bind` checks, without its cost (60,000 of a send's 6.7 million
        # instructions, bench/send_instructions.py): a missing argument is left to the model,
        # whose answer is `missing_field`.
        if len(args) > len(self._names):
            raise TypeError(f"{self.__name__}() takes {len(self._names)} arguments")
        arguments = dict(zip(self._names, args, strict=False))
        for name in kwargs:
            if name in arguments or name not in self.model.model_fields:
                raise TypeError(f"{self.__name__}() got an unexpected or repeated {name!r}")
        arguments.update(kwargs)
        return self.call_json(arguments)

    def call_json(self, arguments: Mapping[str, Any]) -> R:
        """Run the tool on JSON-style arguments (unknown names are an `invalid_input` result,
        as a model's tool call may carry them)."""
        try:
            parsed = parse(self.model, dict(arguments))
            workspace_id = getattr(parsed, "workspace_id", None)
            if workspace_id is None:
                return self._body(parsed)
            with workspace_scope(workspace_id):
                return self._body(parsed)
        except ToolFailure as failure:
            return self._on_failure(arguments, failure)
        except DATABASE_ERRORS as error:
            if not unavailable(error):
                raise
            return self._on_failure(arguments, storage_unavailable(error))

    @property
    def schema(self) -> dict[str, Any]:
        """`{name, description, parameters}`: the JSON schema a model is given for this tool."""
        return {
            "name": self.__name__,
            "description": (self.model.__doc__ or "").strip(),
            "parameters": self.model.model_json_schema(),
        }


def tool_function(
    model: type[M], *, on_failure: FailureResult = default_failure
) -> Callable[[Callable[[M], R]], ToolFunction[M, R]]:
    """Declare a public tool function by its arguments model (see the module's note)."""

    def declare(body: Callable[[M], R]) -> ToolFunction[M, R]:
        return ToolFunction(model, body, on_failure)

    return declare


def _public_signature(model: type[BaseModel], body: Callable[..., Any]) -> inspect.Signature:
    parameters = []
    for name, field in model.model_fields.items():
        default, annotation = _public_default(field), _json_type(field.annotation)
        if default is None:
            annotation = annotation | None
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameters.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
    return inspect.Signature(
        parameters, return_annotation=inspect.signature(body).return_annotation
    )


def _json_type(annotation: Any) -> Any:
    """What a caller passes for a field: its type without validators, a model as a dict and a
    date-time as ISO-8601 text (what `help()` and a reader see)."""
    origin, parts = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _json_type(parts[0])
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, map(_json_type, parts))
    if origin is list:
        return list[_json_type(parts[0])]  # type: ignore[misc]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return dict[str, Any]
    return str if annotation is datetime else annotation


def _public_default(field: FieldInfo) -> Any:
    if field.is_required():
        return inspect.Parameter.empty
    # A list default is shown as None: None means "not given", and a list would be shared.
    return field.default if isinstance(field.default, int | str | type(None)) else None
