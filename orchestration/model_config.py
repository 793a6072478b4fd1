"""An optional model client from an `OAI_CONFIG_LIST` file; the service never needs one.

The file is the classic list of `{model, api_key, base_url, model_info?}` entries. Its path
is the argument, else the `OAI_CONFIG_LIST` environment variable, else `OAI_CONFIG_LIST`
beside main.py. With no file there is no model and everything runs offline. The OpenAI client
(autogen-ext[openai]) is imported only when a config exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autogen_core.models import ChatCompletionClient, ModelInfo

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "OAI_CONFIG_LIST"
_PASSED_THROUGH = ("temperature", "max_tokens", "seed", "timeout", "max_retries")


class ModelConfigError(ValueError):
    """The config list exists but cannot be used. The message never holds a key."""


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("OAI_CONFIG_LIST") or DEFAULT_PATH)


def load_model_client(
    path: str | os.PathLike[str] | None = None, model: str | None = None
) -> ChatCompletionClient | None:
    """The client for the first entry (or the first named `model`), or None without a file."""
    source = config_path(path)
    if not source.is_file():
        return None
    try:
        entries = json.loads(source.read_text())
    except (OSError, ValueError) as error:
        # from None: a JSON error quotes the text around it, which may be a key
        raise ModelConfigError(
            f"{source}: not a readable JSON list ({type(error).__name__})"
        ) from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ModelConfigError(f"{source}: must be a JSON list of objects")
    chosen = [e for e in entries if model is None or e.get("model") == model]
    if not chosen:
        raise ModelConfigError(f"{source}: no entry for model {model!r}")
    return _client(chosen[0], source)


def _client(entry: dict[str, Any], source: Path) -> ChatCompletionClient:
    if not isinstance(entry.get("model"), str):
        raise ModelConfigError(f"{source}: an entry needs a 'model' name")
    api_key = entry.get("api_key") or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise ModelConfigError(f"{source}: no api_key in the entry and OPENAI_API_KEY is unset")
    kwargs: dict[str, Any] = {"model": entry["model"], "api_key": api_key}
    if entry.get("base_url"):
        kwargs["base_url"] = entry["base_url"]
    if "model_info" in entry:
        if not isinstance(entry["model_info"], dict):
            raise ModelConfigError(f"{source}: an entry's 'model_info' must be an object")
        kwargs["model_info"] = ModelInfo(**entry["model_info"])
    elif entry.get("base_url"):
        # A compatible server's model name means nothing to the client: say what it can do.
        kwargs["model_info"] = ModelInfo(
            vision=False,
            function_calling=True,
            json_output=False,
            family="unknown",
            structured_output=False,
        )
    kwargs.update({k: entry[k] for k in _PASSED_THROUGH if k in entry})
    try:
        from autogen_ext.models.openai import OpenAIChatCompletionClient
    except ImportError as error:
        raise ModelConfigError(
            "a model is configured but autogen-ext[openai] is not installed"
        ) from error
    try:
        return OpenAIChatCompletionClient(**kwargs)
    except (TypeError, ValueError) as error:  # e.g. a model name it does not know, no model_info
        raise ModelConfigError(f"{source}: its {entry['model']!r} entry: {error}") from None
