"""The typed payloads the agents hand each other (as `StructuredMessage[...]`).

Class names must stay unique: AutoGen restores structured messages by class name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools import CorrectionAction, ExecutionStatus
from tools.schemas import UUIDStr


class Candidate(BaseModel):
    """One send the request allows: an approved circuit execution and its recipient."""

    model_config = ConfigDict(extra="forbid")

    circuit_execution_id: str
    recipient: str


class SendRequest(BaseModel):
    """What CommunicationsDept is asked to delegate: the task of one group-chat run.

    The content (`final_asset`) is optional: without it the execution's CX06 output is sent;
    with it, `send_email` checks it against that output. A model may only pick one of the
    `candidates` and write a note; it never supplies content, headers or addresses.
    """

    model_config = ConfigDict(extra="forbid")

    workspace_id: UUIDStr  # its transcript is stored in that workspace's scope
    client_id: str
    candidates: list[Candidate] = Field(min_length=1)
    final_asset: dict[str, Any] | None = None
    cc: list[str] = []
    bcc: list[str] = []
    attachments: list[str] = []


class SendJob(BaseModel):
    """CommunicationsDept's delegation: exactly what the EmailAgent will send, or why not."""

    delegated: bool
    reason: str
    note: str | None = None  # the model's note, for the transcript only; never sent
    decided_by: str  # "script" or "model"
    # What the CRM knows of the recipient and client (`get_crm_context`): it informs the team
    # and the transcript; nothing in it reaches the email.
    crm_context: dict[str, Any] = {}
    workspace_id: str
    client_id: str
    circuit_execution_id: str | None = None
    recipient: str | None = None
    final_asset: dict[str, Any] | None = None
    cc: list[str] = []
    bcc: list[str] = []
    attachments: list[str] = []

    def send_arguments(self) -> dict[str, Any]:
        """The `send_email` call this job stands for; everything comes from the request."""
        return {
            "workspace_id": self.workspace_id,
            "client_id": self.client_id,
            "circuit_execution_id": self.circuit_execution_id,
            "recipient": self.recipient,
            "final_asset": self.final_asset,
            "cc": self.cc or None,
            "bcc": self.bcc or None,
            "attachments": self.attachments or None,
        }


class CircuitVerdict(BaseModel):
    """CircuitValidatorAgent's answer: may this execution be sent?"""

    all_required_passed: bool
    circuits_passed: list[str] = []
    missing_circuits: list[str] = []
    failed_circuits: list[str] = []
    error: str | None = None
    crm_context: dict[str, Any] = {}  # the job's, as the validator saw it; never decides


class SendOutcome(BaseModel):
    """EmailAgent's answer: the `send_email` result, summarised, with the result itself."""

    sent: bool
    status: ExecutionStatus | None = None  # None: no send was attempted
    email_id: str | None = None
    error_code: str | None = None
    message: str
    needs_correction: bool = False  # delivery failed: CX08 has a decision to report
    result: dict[str, Any] = {}


class Correction(BaseModel):
    """SelfCorrectionAgent's answer: the CX08 decision taken for a failed send."""

    email_id: str | None
    action: CorrectionAction | Literal["none"]  # reschedule | escalate | none
    reason: str
    status: ExecutionStatus | None = None
    scheduled_for: str | None = None
