"""The API against its own /openapi.json: schemathesis generates requests for every operation
from the document and checks that no answer is a server error or breaks the document."""

from __future__ import annotations

import base64
import itertools
import secrets

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from tests.builders import make_settings


def test_the_document_describes_every_route_and_the_docs_page_is_served(api, workspace):
    document = api.get("/openapi.json").json()
    docs = api.get("/docs/swagger")
    landing = api.get("/docs/")  # where `serve` points: straight to the interactive docs

    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/circuits/executions",
        "/api/circuits/agents/email/send",
        "/api/circuits/agents/email/metrics",
        "/api/email/send",
        "/api/email/validate",
        "/api/email/status/{email_id}",
        "/api/email/providers",
        "/api/email/executions",
        "/api/email/providers/health",
        "/api/email/crm-context",
        "/api/email/suppressions",
        "/api/email/suppressions/remove",
        "/api/email/escalations",
        "/api/email/escalations/{email_id}/acknowledge",
        "/api/email/escalations/{email_id}/send-again",
        "/api/email/workspace",
        "/api/email/reputation",
        "/api/email/reputation/lift",
        "/api/email/webhooks/sendgrid",
        "/api/email/webhooks/resend",
        "/api/email/unsubscribe",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert document["paths"]["/metrics"]["get"]["security"] == [{"metricsToken": []}]
    assert "security" not in document["paths"]["/readyz"]["get"]
    send = document["paths"]["/api/circuits/agents/email/send"]["post"]
    assert send["security"] == [{"workspaceKey": []}]
    assert {"200", "202", "400", "401", "403", "409", "500"} <= set(send["responses"])
    unsubscribe = document["paths"]["/api/email/unsubscribe"]
    assert "security" not in unsubscribe["get"] and "security" not in unsubscribe["post"]
    assert document["components"]["securitySchemes"]["workspaceKey"]["scheme"] == "bearer"
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert landing.status_code == 302 and landing.headers["location"].endswith("/docs/swagger")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def settings(sqlite_url, smtp_sink, tmp_path):
    """Configured as in production: both webhooks have their verification keys."""
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return make_settings(
        sqlite_url,
        smtp_sink,
        tmp_path,
        sendgrid_webhook_public_key=base64.b64encode(der).decode(),
        resend_webhook_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )


def test_no_server_error_and_no_answer_that_breaks_the_document(runtime, workspace, smtp_sink):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app())
    headers = {"Authorization": f"Bearer {workspace['api_key']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 28

    # Valid requests, and requests that break the document (which must be refused cleanly).
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @hypothesis_settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            conforms()
        except Unsatisfiable:
            # An operation with no parameters and no body has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE, operation.label
