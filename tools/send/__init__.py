"""The send pipeline (DESIGN.md section 4), one module per step, in the order they happen:

1. `checks.py`   the request's recipients and attachments (its shape was parsed at the
                 tool's boundary, `tools.schemas.SendEmailArgs`); then the CRM's context
                 of the recipient and client is read, to be stored with the row
                 (`tools/crm_context.py`);
2. `reserve.py`  one transaction under the workspace's lock: the workspace, circuits
                 CX01-CX06 and CX06's content hash, a repeat of an earlier send (returned as
                 it was), suppression, the recipient throttle, the hourly limit; then the row
                 is written and committed, before any provider can see the message;
3. `compose.py`  the finished message: rendered, with its unsubscribe link and headers;
4. `deliver.py`  the hand-over through the provider chain, then steps 5 and 6;
5. `record.py`   the outcome, every attempt, the engagement row, provider health, and CX08's
                 decision when every provider failed;
6. `results.py`  the documented result shapes.

`pipeline.py` runs them for `send_email`; `due.py` runs them for stored sends (scheduled, when
due; queued, for a worker), in batches, through the same reservation. `queries.py` holds
their SQL.
"""

from tools.send.due import send_due_emails, send_queued_emails, send_stored_emails
from tools.send.pipeline import send_email

__all__ = ["send_due_emails", "send_email", "send_queued_emails", "send_stored_emails"]
