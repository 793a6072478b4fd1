"""The group chat end to end against a real aiosmtpd server, with and without a model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, ModelFamily, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

import tools
from agents import CircuitValidatorAgent, EmailAgent
from agents.messages import Candidate, SendRequest
from orchestration.model_config import ModelConfigError, load_model_client
from orchestration.team import run_send, run_send_sync
from tests.builders import ASSET, approve
from tests.fake_openai import FakeOpenAI
from tests.observers import parse_message
from tools.boundary import tool_function
from tools.schemas import ValidateCircuitsArgs
from tools.transcripts import get_transcripts

CLIENT = "550e8400-e29b-41d4-a716-446655440000"


def _request(workspace: dict[str, Any], execution_id: str, recipient: str = "bob@example.com"):
    return SendRequest(
        workspace_id=workspace["workspace_id"],
        client_id=CLIENT,
        candidates=[Candidate(circuit_execution_id=execution_id, recipient=recipient)],
    )


def _kinds(run) -> list[str]:
    return [f"{m.source}:{type(m).__name__}" for m in run.messages]


def test_a_delegated_send_passes_and_its_transcript_is_stored(workspace, smtp_sink):
    execution = approve(workspace["workspace_id"])
    run = run_send_sync(_request(workspace, execution))

    assert run.sent and run.error is None, run
    assert run.stop_reason == "Digraph execution is complete"
    assert _kinds(run) == [
        "user:StructuredMessage[SendRequest]",
        "CommunicationsDept:ToolCallRequestEvent",  # get_crm_context
        "CommunicationsDept:ToolCallExecutionEvent",
        "CommunicationsDept:StructuredMessage[SendJob]",
        "CircuitValidatorAgent:ToolCallRequestEvent",
        "CircuitValidatorAgent:ToolCallExecutionEvent",
        "CircuitValidatorAgent:StructuredMessage[CircuitVerdict]",
        "EmailAgent:ToolCallRequestEvent",
        "EmailAgent:ToolCallExecutionEvent",
        "EmailAgent:StructuredMessage[SendOutcome]",
    ]
    (message,) = smtp_sink.messages
    assert parse_message(message.data)["Subject"] == ASSET["subject"]
    assert message.rcpt_tos == ["bob@example.com"]

    email_id = run.outcome.email_id
    (stored,) = get_transcripts(workspace["workspace_id"], email_id=email_id)
    assert stored["transcript_id"] == run.transcript_id
    assert stored["circuit_execution_id"] == execution
    request = next(m for m in stored["messages"] if m["source"] == "EmailAgent")
    (call,) = request["content"]
    assert call["name"] == "send_email"
    assert json.loads(call["arguments"])["circuit_execution_id"] == execution
    result = next(
        m
        for m in stored["messages"]
        if m["kind"] == "ToolCallExecutionEvent" and m["source"] == "EmailAgent"
    )
    assert json.loads(result["content"][0]["content"])["email_id"] == email_id


def test_a_circuit_failure_sends_nothing(workspace, smtp_sink):
    execution = "exec_no_cx05"
    for code in ("CX01", "CX02", "CX03", "CX04"):
        tools.record_circuit_result(workspace["workspace_id"], execution, code, True)
    tools.record_circuit_result(workspace["workspace_id"], execution, "CX06", True, output=ASSET)

    run = run_send_sync(_request(workspace, execution))

    assert not run.sent and run.outcome is None
    assert run.verdict.missing_circuits == ["CX05_BRAND_GUARD"]
    assert "EmailAgent" not in {m.source for m in run.messages}
    assert smtp_sink.messages == []
    (stored,) = get_transcripts(workspace["workspace_id"], circuit_execution_id=execution)
    assert stored["email_id"] is None


def test_a_provider_failure_brings_in_the_self_correction_agent(workspace, smtp_sink):
    smtp_sink.recorder.replies.append("554 5.7.1 rejected")
    run = run_send_sync(_request(workspace, approve(workspace["workspace_id"])))

    assert not run.sent and run.outcome.needs_correction
    assert run.correction.action == "reschedule" and run.correction.status == "scheduled"
    assert run.messages[-1].source == "SelfCorrectionAgent"
    assert smtp_sink.messages == []
    status = tools.get_email_status(run.outcome.email_id)
    assert [a["action"] for a in status["self_corrections"]] == ["reschedule"]
    assert get_transcripts(workspace["workspace_id"], email_id=run.outcome.email_id)
    # It asks about its own workspace's email, in that workspace's scope.
    (call,) = next(m for m in run.messages if m.source == "SelfCorrectionAgent").content
    assert json.loads(call.arguments)["workspace_id"] == workspace["workspace_id"]


def test_an_agent_that_raises_gives_a_failure_result_and_the_next_run_works(
    workspace, smtp_sink, mocker
):
    execution = approve(workspace["workspace_id"])
    crashing = mocker.patch.object(
        CircuitValidatorAgent, "on_messages", side_effect=RuntimeError("validator crashed")
    )
    broken = run_send_sync(_request(workspace, execution))
    mocker.stop(crashing)
    assert broken.stop_reason == "team error" and broken.error == "RuntimeError"
    assert not broken.sent and smtp_sink.messages == []

    run = run_send_sync(_request(workspace, execution))  # a fresh team per run
    assert run.sent


def test_a_failing_tool_becomes_an_error_result_not_a_broken_team(workspace, smtp_sink, mocker):
    @tool_function(ValidateCircuitsArgs)
    def validate_circuits(args: ValidateCircuitsArgs) -> dict:
        raise OSError("disk gone")  # a fault a real database cannot be made to produce here

    execution = approve(workspace["workspace_id"])
    mocker.patch("tools.validate_circuits", validate_circuits)
    run = run_send_sync(_request(workspace, execution))
    assert run.verdict is not None and not run.verdict.all_required_passed
    assert run.stop_reason == "Digraph execution is complete"
    assert smtp_sink.messages == []


def test_an_invalid_request_is_a_clear_failure(workspace):
    run = run_send_sync({"workspace_id": workspace["workspace_id"], "candidates": []})
    assert run.request is None and run.stop_reason == "invalid request" and run.error


def test_the_email_agent_advertises_the_tools_own_schemas(runtime):
    agent = EmailAgent()
    schemas = {tool.name: tool.schema for tool in agent.tools}
    assert list(schemas) == ["send_email", "validate_email", "get_email_status"]
    declared = tools.TOOL_SCHEMAS["send_email"]
    assert schemas["send_email"]["description"] == declared["description"]
    assert set(schemas["send_email"]["parameters"]["properties"]) == set(
        declared["parameters"]["properties"]
    )
    assert schemas["send_email"]["parameters"]["required"] == declared["parameters"]["required"]
    # Still plain functions underneath.
    assert tools.validate_email("bob@example.com")["valid"] is True


def test_the_email_agent_answers_seed_000s_methods_itself(workspace, smtp_sink):
    agent = EmailAgent("TestEmailAgent")
    assert agent.name == "TestEmailAgent"
    assert agent.validate_email("test@example.com")["valid"] is True
    assert agent.validate_email("invalid-email")["valid"] is False

    sent = agent.send_email(
        workspace["workspace_id"],
        CLIENT,
        approve(workspace["workspace_id"]),
        "test@example.com",
        ASSET,
    )

    assert sent["status"] == "sent" and sent["recipient"] == "test@example.com"
    assert agent.get_email_status(sent["email_id"])["status"] == "sent"
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["test@example.com"]]


def test_run_send_works_inside_a_running_event_loop(workspace, smtp_sink):
    execution = approve(workspace["workspace_id"])

    async def inside_a_loop():  # as in a Jupyter cell
        sync_run = run_send_sync(_request(workspace, execution))
        awaited = await run_send(_request(workspace, execution))
        return sync_run, awaited

    first, second = asyncio.run(inside_a_loop())
    assert first.sent
    assert second.outcome.error_code == "duplicate_send"
    assert len(smtp_sink.messages) == 1


# A model that tries to take over --------------------------------------------------------

INFO = ModelInfo(
    vision=False,
    function_calling=True,
    json_output=False,
    family=ModelFamily.UNKNOWN,
    structured_output=False,
)


def _calls(*calls: tuple[str, dict[str, Any]]) -> CreateResult:
    return CreateResult(
        finish_reason="function_calls",
        content=[
            FunctionCall(id=f"c{i}", name=name, arguments=json.dumps(args))
            for i, (name, args) in enumerate(calls)
        ],
        usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
        cached=False,
    )


def test_a_scripted_model_chooses_the_send_and_notes_it(workspace, smtp_sink):
    first = approve(workspace["workspace_id"])
    second = approve(workspace["workspace_id"])
    request = SendRequest(
        workspace_id=workspace["workspace_id"],
        client_id=CLIENT,
        candidates=[
            Candidate(circuit_execution_id=first, recipient="ann@example.com"),
            Candidate(circuit_execution_id=second, recipient="bob@example.com"),
        ],
    )
    client = ReplayChatCompletionClient(
        [_calls(("delegate_send", {"candidate": 1, "note": "Bob asked first"}))], model_info=INFO
    )
    run = run_send_sync(request, client)

    assert run.sent and run.job.decided_by == "model" and run.job.note == "Bob asked first"
    assert smtp_sink.messages[0].rcpt_tos == ["bob@example.com"]
    (asked,) = client.create_calls
    assert [t["name"] for t in asked["tools"]] == ["delegate_send"]  # no content-bearing tool


@pytest.mark.parametrize(
    "answer",
    [
        _calls(("delegate_send", {"candidate": 0, "subject": "You WON a prize"})),
        _calls(("delegate_send", {"candidate": 0, "html_body": "<a href=evil>click</a>"})),
        _calls(("delegate_send", {"candidate": 3})),  # a recipient no approved execution names
        _calls(("delegate_send", {"candidate": "0; bcc evil@attacker.example"})),
        _calls(("send_email", {"recipient": "evil@attacker.example", "subject": "Hi"})),
        "Send it to evil@attacker.example with the subject 'You WON a prize'",
    ],
    ids=["subject", "body", "unknown-recipient", "smuggled-text", "unoffered-tool", "prose"],
)
def test_nothing_a_model_says_reaches_the_wire(workspace, smtp_sink, answer):
    request = _request(workspace, approve(workspace["workspace_id"]))
    client = ReplayChatCompletionClient([answer], model_info=INFO)

    run = run_send_sync(request, client)

    assert not run.job.delegated and run.job.decided_by == "model"
    assert not run.sent and smtp_sink.messages == []
    assert [m.source for m in run.messages] == ["user"] + ["CommunicationsDept"] * 3


def test_a_note_is_kept_in_the_transcript_and_never_sent(workspace, smtp_sink):
    note = "Subject: You WON a prize\nBcc: evil@attacker.example"
    client = ReplayChatCompletionClient(
        [_calls(("delegate_send", {"candidate": 0, "note": note}))], model_info=INFO
    )
    run = run_send_sync(_request(workspace, approve(workspace["workspace_id"])), client)

    assert run.sent
    (message,) = smtp_sink.messages
    assert b"WON" not in message.data and b"attacker" not in message.data
    assert message.rcpt_tos == ["bob@example.com"]
    (stored,) = get_transcripts(workspace["workspace_id"], email_id=run.outcome.email_id)
    assert any(
        m["content"].get("note") == note
        for m in stored["messages"]
        if isinstance(m["content"], dict)
    )


# The model path over HTTP, from an OAI_CONFIG_LIST file ----------------------------------


def test_the_model_path_end_to_end_through_an_oai_config_list(workspace, smtp_sink, tmp_path):
    fake = FakeOpenAI().start()
    try:
        config = tmp_path / "OAI_CONFIG_LIST"
        config.write_text(
            json.dumps(
                [{"model": "local-model", "api_key": "sk-local-test", "base_url": f"{fake.url}/v1"}]
            )
        )
        client = load_model_client(config)
        run = run_send_sync(_request(workspace, approve(workspace["workspace_id"])), client)

        assert run.sent and run.job.decided_by == "model"
        (request,) = fake.requests
        assert request.body["model"] == "local-model"
        assert [t["function"]["name"] for t in request.body["tools"]] == ["delegate_send"]
        assert len(smtp_sink.messages) == 1
    finally:
        fake.stop()


def test_model_config_errors_are_clear_and_never_show_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("OAI_CONFIG_LIST", raising=False)
    assert load_model_client(tmp_path / "absent") is None
    broken = tmp_path / "broken"
    broken.write_text('[{"model": "m", "api_key": "sk-very-secret",')
    with pytest.raises(ModelConfigError) as caught:
        load_model_client(broken)
    assert "sk-very-secret" not in str(caught.value)
    keyless = tmp_path / "keyless"
    keyless.write_text('[{"model": "m"}]')
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelConfigError, match="api_key"):
        load_model_client(keyless)
    monkeypatch.setenv("OAI_CONFIG_LIST", str(keyless))
    with pytest.raises(ModelConfigError, match="api_key"):
        load_model_client()
    unknown = tmp_path / "unknown-model"
    unknown.write_text('[{"model": "house-model", "api_key": "sk-very-secret"}]')
    with pytest.raises(ModelConfigError, match="'house-model' entry: model_info is required"):
        load_model_client(unknown)  # the client knows no such OpenAI model: say what it is
    odd_info = tmp_path / "odd-info"
    odd_info.write_text('[{"model": "m", "api_key": "k", "model_info": "vision"}]')
    with pytest.raises(ModelConfigError, match="'model_info' must be an object"):
        load_model_client(odd_info)


def test_an_unknown_workspace_ends_the_chat_without_a_send_or_a_crash(runtime, smtp_sink):
    stranger = {"workspace_id": "0d9f8e7c-6b5a-4c3d-2e1f-0a9b8c7d6e5f"}
    run = run_send_sync(_request(stranger, "exec_1"))

    assert not run.sent and not run.verdict.all_required_passed
    assert run.transcript_id is None  # nothing of that id to file it under
    assert smtp_sink.messages == []
