"""What an operator does by hand, as JSON routes (the console's twins): suppressions listed,
added and removed, escalations listed, acknowledged and sent again. Each change is recorded
with the key's fingerprint and the note given (`tools/operator_actions.py`)."""

from __future__ import annotations

from flask import g
from flask_openapi3 import Tag

import tools
from api.auth import protected_blueprint
from api.responses import tool_response
from api.schemas import (
    AcknowledgedResponse,
    AddSuppressionBody,
    ErrorResponse,
    EscalationsQuery,
    EscalationsResponse,
    NoteBody,
    RemoveSuppressionBody,
    ReputationResponse,
    SentAgainResponse,
    StatusPath,
    SuppressionChangeResponse,
    SuppressionsQuery,
    SuppressionsResponse,
    UpdateWorkspaceBody,
    WorkspaceResponse,
)

operations = protected_blueprint(
    "operations",
    "/api/email",
    Tag(name="operations", description="Suppressions and escalations, for operators"),
    {400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse},
)


@operations.get("/suppressions", responses={200: SuppressionsResponse})
def suppressions(query: SuppressionsQuery):
    """This workspace's suppression entries, newest first; `search` matches part of the
    address. Paged, with `total_count`."""
    result = tools.list_suppressions(g.workspace_id, query.search, query.limit, query.offset)
    return tool_response(result)


@operations.post("/suppressions", responses={201: SuppressionChangeResponse})
def add_suppression(body: AddSuppressionBody):
    """Suppress an address, with why (recorded): 201."""
    result = tools.suppress(
        g.workspace_id,
        body.email,
        body.reason,
        body.bounce_type,
        note=body.note,
        key_fingerprint=g.key_fingerprint,
    )
    return tool_response(result, ok=201)


@operations.post("/suppressions/remove", responses={200: SuppressionChangeResponse})
def remove_suppression(body: RemoveSuppressionBody):
    """Lift every entry for an address, with why (recorded); 404 if it is not suppressed."""
    result = tools.remove_suppression(
        g.workspace_id, body.email, body.note, key_fingerprint=g.key_fingerprint
    )
    return tool_response(result)


@operations.get("/escalations", responses={200: EscalationsResponse})
def escalations(query: EscalationsQuery):
    """The sends that need a person (escalated, `delivery_unconfirmed` included), newest
    first; acknowledged ones too with `includeAcknowledged=true`."""
    result = tools.list_escalations(
        g.workspace_id, query.includeAcknowledged, query.limit, query.offset
    )
    return tool_response(result)


@operations.post(
    "/escalations/<email_id>/acknowledge",
    responses={200: AcknowledgedResponse, 409: ErrorResponse},
)
def acknowledge(path: StatusPath, body: NoteBody):
    """Record that a person looked at this escalated send and what they found: 404 for
    another workspace's or an unknown id, 409 when acknowledged already."""
    result = tools.acknowledge_escalation(
        g.workspace_id, path.email_id, body.note, key_fingerprint=g.key_fingerprint
    )
    return tool_response(result)


@operations.post(
    "/escalations/<email_id>/send-again",
    responses={200: SentAgainResponse, 409: ErrorResponse},
)
def send_again(path: StatusPath, body: NoteBody):
    """Send an escalated email again, with why (recorded), when its record proves nothing was
    handed over (every provider refused it): the same email, through every check again; the
    answer says what it became. 404 for another workspace's or an unknown id; 409
    `not_resendable` when it is not escalated (sent again already, say) or may have been
    delivered (`delivery_unconfirmed`)."""
    result = tools.send_again(
        g.workspace_id, path.email_id, body.note, key_fingerprint=g.key_fingerprint
    )
    return tool_response(result)


@operations.get("/workspace", responses={200: WorkspaceResponse})
def workspace():
    """This workspace's settings: sender, postal address, hourly limit (never its key)."""
    return tool_response(tools.get_workspace(g.workspace_id))


@operations.patch("/workspace", responses={200: WorkspaceResponse})
def update_workspace(body: UpdateWorkspaceBody):
    """Change the sender, the postal address or the hourly limit; the next send uses them.
    Recorded (what changed, from what, the note, the key's fingerprint)."""
    result = tools.update_workspace(
        g.workspace_id, **body.model_dump(exclude_none=True), key_fingerprint=g.key_fingerprint
    )
    return tool_response(result)


@operations.get("/reputation", responses={200: ReputationResponse})
def reputation():
    """CX05's brand guard: this workspace's complaint and unsubscribe rates over the window,
    their thresholds, the open signals, and whether new sends are paused."""
    return tool_response(tools.check_reputation(g.workspace_id))


@operations.post("/reputation/lift", responses={200: ReputationResponse})
def lift_pause(body: NoteBody):
    """Lift the pause a hard complaint rate put on this workspace's sends (recorded, with the
    note); 404 when no complaint signal is open."""
    result = tools.lift_sending_pause(g.workspace_id, body.note, key_fingerprint=g.key_fingerprint)
    if result.get("error"):
        return tool_response(result)
    return tool_response({**tools.check_reputation(g.workspace_id), **result})
