"""A local OpenAI-compatible chat-completions server for the model path, offline."""

from __future__ import annotations

from tests.fake_http import Answer, FakeAPI, Received

API_KEY = "sk-local-test"


class FakeOpenAI(FakeAPI):
    """`POST /v1/chat/completions` answering with one delegate_send tool call."""

    def handle(self, received: Received) -> Answer:
        if received.path != "/v1/chat/completions":
            return Answer(404, {"error": {"message": "not found"}})
        if received.headers.get("authorization") != f"Bearer {API_KEY}":
            return Answer(401, {"error": {"message": "bad key"}})
        self.accept(received)
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "delegate_send", "arguments": '{"candidate": 0}'},
        }
        return Answer(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": received.body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                        "finish_reason": "tool_calls",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
            },
        )
