"""Any input, however wrong, gets a structured, JSON-serialisable result, never an exception."""

from __future__ import annotations

import json
import math

import pytest

import tools
from tests.builders import ASSET, approve

CLIENT = "550e8400-e29b-41d4-a716-446655440000"
HUGE = "x" * 5_000_000
ODD_VALUES = [None, 0, 1.5, True, b"bytes", ["list"], {"a": 1}, object(), HUGE, "", "\x00"]


def _serialisable(result: object) -> None:
    text = json.dumps(result)
    assert len(text) < 20_000, "a result must not echo huge input back"


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: type(v).__name__)
def test_send_email_survives_any_value_in_any_field(value, workspace, smtp_sink, runtime):
    wid = workspace["workspace_id"]
    good = {
        "workspace_id": wid,
        "client_id": CLIENT,
        "circuit_execution_id": approve(wid),
        "recipient": "bob@example.com",
        "final_asset": ASSET,
    }
    fields = [*good, "cc", "bcc", "attachments", "scheduled_for"]
    if value is None:  # None means "not given": only required fields can be wrong that way
        fields = ["workspace_id", "client_id", "circuit_execution_id", "recipient"]
    for field in fields:
        result = tools.send_email(**{**good, field: value})
        _serialisable(result)
        assert result["status"] == "blocked", (field, result)
    assert smtp_sink.messages == []


@pytest.mark.parametrize("value", ODD_VALUES, ids=lambda v: type(v).__name__)
def test_other_tools_survive_any_value(value, workspace):
    wid = workspace["workspace_id"]
    results = [
        tools.validate_email(value),
        tools.get_email_status(value),
        tools.get_email_status(CLIENT, value),
        tools.validate_circuits(value, "exec_1"),
        tools.validate_circuits(wid, value),
        tools.record_circuit_result(value, "exec_1", "CX01", True),
        tools.record_circuit_result(wid, "exec_1", value, True),
        tools.record_circuit_result(wid, "exec_1", "CX01", value),
        tools.record_circuit_result(wid, "exec_1", "CX06", True, value),
        tools.create_workspace(value, "a@b.example", "1 Road, Town"),
        tools.create_workspace("N", value, "1 Road, Town"),
        tools.create_workspace("N", "a@b.example", "1 Road, Town", value),
        tools.create_workspace("N", "a@b.example", "1 Road, Town", None, value),
        tools.suppress(wid, value, "bounced"),
        tools.suppress(wid, "a@b.example", value),
        tools.unsubscribe(value),
    ]
    for result in results:
        _serialisable(result)
    assert tools.is_suppressed(value, "a@b.example") is False
    assert tools.is_suppressed(wid, value) is False


@pytest.mark.parametrize(
    "output",
    [
        {"subject": "s", "html_body": "h", "extra": object()},
        {"subject": "s", "html_body": "h", "extra": b"bytes"},
        {"subject": "s", "html_body": "h", "extra": {1, 2}},
        {"subject": "s", "html_body": "h", "extra": math.nan},
        {"subject": "s", "html_body": "h", "extra": "y" * 2_000_000},
    ],
    ids=["object", "bytes", "set", "nan", "too-large"],
)
def test_cx06_output_must_be_plain_json_of_bounded_size(output, workspace):
    result = tools.record_circuit_result(workspace["workspace_id"], "e1", "CX06", True, output)
    assert result["success"] is False
    assert result["error"]["code"] == "invalid_input"
    _serialisable(result)


def test_deeply_nested_output_is_refused_not_crashed(workspace):
    nested: dict = {}
    for _ in range(5000):
        nested = {"n": nested}
    result = tools.record_circuit_result(workspace["workspace_id"], "e1", "CX01", True, nested)
    assert result["success"] is False


@pytest.mark.parametrize(
    "when", ["9999-12-31T23:59:59-14:00", "1900-01-01T00:00:00Z", 3600, 1.5, True]
)
def test_schedule_outside_the_next_year_or_not_iso_text_is_invalid(when, workspace, smtp_sink):
    wid = workspace["workspace_id"]
    result = tools.send_email(
        wid, CLIENT, approve(wid), "bob@example.com", ASSET, scheduled_for=when
    )
    assert result["error"]["code"] == "invalid_input", result
    assert smtp_sink.messages == []


def test_strict_types_do_not_coerce(workspace):
    wid = workspace["workspace_id"]
    assert tools.record_circuit_result(wid, "e1", "CX01", "yes")["error"]["code"] == (
        "invalid_input"
    )
    bool_limit = tools.create_workspace("N", "a@b.example", "1 Road, Town", None, True)
    assert bool_limit["error"]["code"] == "invalid_input"
