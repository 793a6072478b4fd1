"""Filling the CRM tables for a demo or a test (`main.py load-crm`).

In production the CRM is another system's and this service only reads it
(`tools/crm_context.py`). The loader writes one workspace's rows from a JSON file (an object
of tables: `contacts`, `organizations`, `campaigns`, `synthex_tenant_profiles`, each a list of
rows) or a CSV file (one table, named by the option or by the file's name; JSON-valued
columns hold JSON text, an empty cell is no value). Rows are upserted by id, all in one
transaction: a file with one bad row loads nothing.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from persistence import Base, Campaign, Contact, Organization, TenantProfile, Workspace
from tools.boundary import tool_function
from tools.errors import ErrorCode, ToolFailure
from tools.runtime import get_runtime
from tools.schemas import LoadCrmArgs

TABLES: dict[str, type[Base]] = {
    "contacts": Contact,
    "organizations": Organization,
    "campaigns": Campaign,
    "synthex_tenant_profiles": TenantProfile,
}
# Whose row holds the id is not said: another workspace's rows are not this one's to know of.
_ID_TAKEN = "{row}: its id is already in use; give another, or none for a new one"
# The columns a CSV file holds as JSON text.
_JSON_COLUMNS = frozenset({"historical_engagement", "brand_rules"})


def read_crm_file(path: Path, table: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The tables in a JSON or CSV file (see the module's note), or `ToolFailure`."""
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ToolFailure(ErrorCode.INVALID_INPUT, f"{path}: {_reason(error)}") from None
    if path.suffix.lower() == ".json":
        return _json_tables(path, text)
    if path.suffix.lower() == ".csv":
        return {_csv_table(path, table): _csv_rows(path, text)}
    raise ToolFailure(ErrorCode.INVALID_INPUT, f"{path}: not a .json or .csv file")


def _json_tables(path: Path, text: str) -> dict[str, list[dict[str, Any]]]:
    try:
        tables = json.loads(text)
    except json.JSONDecodeError as error:
        raise ToolFailure(ErrorCode.INVALID_INPUT, f"{path}: not JSON ({error})") from None
    if not isinstance(tables, dict) or not set(tables) <= set(TABLES):
        raise ToolFailure(
            ErrorCode.INVALID_INPUT,
            f"{path}: must be a JSON object of tables ({', '.join(TABLES)})",
        )
    return tables


def _csv_table(path: Path, table: str | None) -> str:
    name = table or path.stem
    if name not in TABLES:
        raise ToolFailure(
            ErrorCode.INVALID_INPUT,
            f"{path}: which table? name it with --table ({', '.join(TABLES)})",
        )
    return name


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    # newline="": a quoted cell may hold a line break (an address on two lines, say).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        line = reader.line_num
        values: dict[str, Any] = {}
        for column, cell in row.items():
            if column is None or cell is None:
                raise ToolFailure(ErrorCode.INVALID_INPUT, f"{path}:{line}: wrong number of cells")
            if cell == "":
                continue
            try:
                values[column] = json.loads(cell) if column in _JSON_COLUMNS else cell
            except json.JSONDecodeError:
                raise ToolFailure(
                    ErrorCode.INVALID_INPUT, f"{path}:{line}: {column} is not JSON"
                ) from None
        rows.append(values)
    return rows


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or type(error).__name__


@tool_function(LoadCrmArgs)
def load_crm_rows(args: LoadCrmArgs) -> dict[str, Any]:
    """Upsert one workspace's CRM rows (see the module's note): `{success, loaded: {table:
    rows}}`. A campaign's organization must be the workspace's, loaded now or before."""
    with get_runtime().sessions.begin() as session:
        if session.get(Workspace, args.workspace_id) is None:
            raise ToolFailure(ErrorCode.UNKNOWN_WORKSPACE, "no such workspace")
        for table in TABLES:  # organizations before the campaigns that name them
            for index, row in enumerate(getattr(args, table)):
                values = row.model_dump()
                if table == "campaigns":
                    _check_client(session, args.workspace_id, index, values["organization_id"])
                _upsert(session, args.workspace_id, table, index, values)
        try:
            session.flush()
        except IntegrityError:  # on PostgreSQL another workspace's row is invisible (RLS)
            raise ToolFailure(ErrorCode.INVALID_INPUT, _ID_TAKEN.format(row="a row")) from None
    return {
        "success": True,
        "workspace_id": args.workspace_id,
        "loaded": {table: len(getattr(args, table)) for table in TABLES},
    }


def _upsert(
    session: Session, workspace_id: str, table: str, index: int, values: dict[str, Any]
) -> None:
    model = TABLES[table]
    if model is TenantProfile:  # one per workspace: found by it
        found = session.query(TenantProfile).filter_by(workspace_id=workspace_id).one_or_none()
        values["id"] = found.id if found else None
    values["id"] = values.get("id") or str(uuid.uuid4())
    existing = session.get(model, values["id"])
    if existing is not None and existing.workspace_id != workspace_id:
        raise ToolFailure(ErrorCode.INVALID_INPUT, _ID_TAKEN.format(row=f"{table}[{index}]"))
    session.merge(model(workspace_id=workspace_id, **values))


def _check_client(session: Session, workspace_id: str, index: int, client: str | None) -> None:
    if client is None:
        return
    organization = session.get(Organization, client)
    if organization is None or organization.workspace_id != workspace_id:
        raise ToolFailure(
            ErrorCode.INVALID_INPUT,
            f"campaigns[{index}].organization_id: no such organization in this workspace",
        )
