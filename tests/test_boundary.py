"""The edge every tool function shares: one declaration gives the parameters, the parsing,
the JSON schema and the error result."""

from __future__ import annotations

import inspect

import pytest

import tools
from tools.schemas import SendEmailArgs


def test_a_tools_parameters_and_schema_come_from_its_arguments_model():
    parameters = list(inspect.signature(tools.send_email).parameters)
    assert parameters[:4] == ["workspace_id", "client_id", "circuit_execution_id", "recipient"]
    assert parameters == list(SendEmailArgs.model_fields)
    schema = tools.TOOL_SCHEMAS["send_email"]
    assert schema["parameters"] == SendEmailArgs.model_json_schema()
    assert list(schema["parameters"]["properties"]) == parameters
    assert schema["description"] == "Send one circuit-approved email to one recipient."


def test_a_wrong_call_from_code_is_a_type_error_and_one_from_json_an_error_result(runtime):
    with pytest.raises(TypeError):
        tools.get_email_status("a", "b", "c")
    with pytest.raises(TypeError):
        tools.get_email_status(email_id="a", email="b")
    # A model's tool call arrives as JSON: an unknown argument is the tool's own error result.
    result = tools.get_email_status.call_json({"email_id": "a", "verbose": True})
    assert result["found"] is False and result["error"]["code"] == "invalid_input"
    assert tools.validate_circuits()["error"]["code"] == "missing_field"
