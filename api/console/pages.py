"""The console's pages. Each reads through a tool function and renders a template; each form
posts to a tool function and redirects back with what happened (post/redirect/get). The
workspace is always the signed-in one (`g.workspace_id`), never a parameter."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError, generate_csrf

import tools
from api.console.charts import STATUS_ORDER, hourly_chart, usage_gauge
from api.console.session import csrf_refused, guard, safe_next, secure_headers, sign_in, sign_out
from tools import dev_inbox

PAGE_SIZE = 25
# An email's HTML may carry anything: in its frame nothing runs, nothing is fetched (a remote
# image would tell its sender that an operator opened it), and the frame is its own origin.
MESSAGE_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"

console = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)
console.before_request(guard)
console.after_request(secure_headers)
console.register_error_handler(CSRFError, csrf_refused)
console.register_error_handler(404, lambda _: (render_template("console/not_found.html"), 404))


@console.context_processor
def _page_context() -> dict[str, Any]:
    return {
        "csrf_token": generate_csrf,
        "dev_inbox": tools.get_runtime().settings.uses_dev_smtp_server,
        "statuses": [status.value for status in tools.ExecutionStatus],
    }


@console.route("/sign-in", methods=["GET", "POST"], endpoint="sign_in")
def sign_in_page() -> Any:
    if request.method == "POST":
        if sign_in(request.form.get("api_key", "")):
            return redirect(safe_next(request.args.get("next")))
        return render_template("console/sign_in.html", refused=True), 401
    return render_template("console/sign_in.html", refused=False)


@console.post("/sign-out")
def sign_out_page() -> Response:
    sign_out()
    return redirect(url_for("console.sign_in"))


@console.get("/")
def overview() -> str:
    data = _ok(tools.get_workspace_overview(g.workspace_id))
    limit = data["hourly_limit"]
    return render_template(
        "console/overview.html",
        overview=data,
        chart=hourly_chart(data["hours"]),
        gauge=usage_gauge(limit["used"], limit["limit"]),
        status_order=STATUS_ORDER,
        open_breakers=[p for p in data["providers"] if p["breaker"]["state"] == "open"],
    )


_FILTERS = ("status", "recipient", "client_id", "circuit_execution_id", "provider")


@console.get("/executions")
def executions() -> tuple[str, int]:
    filters = {name: request.args.get(name, "").strip() for name in (*_FILTERS, "since", "until")}
    page = _page_number()
    result = tools.get_send_history(
        g.workspace_id,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        created_since=_day_start(filters["since"]),
        created_before=_day_start(filters["until"], next_day=True),
        **{name: filters[name] or None for name in _FILTERS},
    )
    error = result.get("error")
    return render_template(
        "console/executions.html",
        filters=filters,
        result=result if not error else {"executions": [], "total_count": 0},
        error=error,
        page=page,
        pages=_page_count(result.get("total_count", 0)),
        page_args={k: v for k, v in filters.items() if v},
    ), (400 if error else 200)


@console.get("/executions/<email_id>")
def execution(email_id: str) -> str:
    detail = tools.get_execution_detail(g.workspace_id, email_id)
    if detail.get("error"):
        abort(404)
    return render_template("console/execution.html", e=detail)


@console.get("/executions/<email_id>/messages/<int:index>")
def message_html(email_id: str, index: int) -> Response:
    """The HTML part of one delivery round, for the sandboxed frame on the execution page."""
    detail = tools.get_execution_detail(g.workspace_id, email_id)
    messages = [] if detail.get("error") else detail["messages"]
    if not 0 <= index < len(messages):
        abort(404)
    return _framed(messages[index]["html_body"])


@console.get("/escalations")
def escalations() -> str:
    include = request.args.get("acknowledged") == "1"
    page = _page_number()
    result = _ok(
        tools.list_escalations(
            g.workspace_id, include, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
    )
    return render_template(
        "console/escalations.html",
        result=result,
        include_acknowledged=include,
        page=page,
        pages=_page_count(result["total_count"]),
    )


@console.post("/escalations/<email_id>/acknowledge")
def acknowledge(email_id: str) -> Response:
    result = tools.acknowledge_escalation(
        g.workspace_id, email_id, request.form.get("note", ""), key_fingerprint=g.key_fingerprint
    )
    _flash(result, "Acknowledged: the note is recorded with this sign-in's key.")
    return redirect(url_for("console.escalations"))


@console.post("/escalations/<email_id>/send-again")
def send_again(email_id: str) -> Response:
    result = tools.send_again(
        g.workspace_id, email_id, request.form.get("note", ""), key_fingerprint=g.key_fingerprint
    )
    _flash(result, f"Sent again through every check: it is now {result.get('status')}.")
    return redirect(url_for("console.execution", email_id=email_id))


@console.get("/suppressions")
def suppressions() -> tuple[str, int]:
    search = request.args.get("search", "").strip()
    page = _page_number()
    result = tools.list_suppressions(
        g.workspace_id, search or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    error = result.get("error")
    return render_template(
        "console/suppressions.html",
        search=search,
        result=result if not error else {"suppressions": [], "total_count": 0},
        error=error,
        page=page,
        pages=_page_count(result.get("total_count", 0)),
    ), (400 if error else 200)


@console.post("/suppressions")
def add_suppression() -> Response:
    form = request.form
    result = tools.suppress(
        g.workspace_id,
        form.get("email", ""),
        form.get("reason", ""),
        form.get("bounce_type") or None,
        note=form.get("note", ""),
        key_fingerprint=g.key_fingerprint,
    )
    _flash(result, f"Suppressed {form.get('email', '')}: nothing more is sent to it.")
    return redirect(url_for("console.suppressions"))


@console.post("/suppressions/remove")
def remove_suppression() -> Response:
    form = request.form
    result = tools.remove_suppression(
        g.workspace_id,
        form.get("email", ""),
        form.get("note", ""),
        key_fingerprint=g.key_fingerprint,
    )
    _flash(result, f"Lifted the suppression of {form.get('email', '')}.")
    return redirect(url_for("console.suppressions", search=request.args.get("search") or None))


@console.get("/inbox")
def inbox_list() -> str:
    runtime = _dev_inbox_runtime()
    page = _page_number()
    messages, total = dev_inbox.received(
        runtime, g.workspace_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    return render_template(
        "console/inbox.html", messages=messages, page=page, pages=_page_count(total), total=total
    )


@console.get("/inbox/<email_id>")
def inbox_message(email_id: str) -> str:
    opened = dev_inbox.open_message(_dev_inbox_runtime(), g.workspace_id, email_id)
    if opened is None:
        abort(404)
    tab = request.args.get("tab", "html" if opened.html else "text")
    return render_template("console/inbox_message.html", m=opened, tab=tab)


@console.get("/inbox/<email_id>/html")
def inbox_html(email_id: str) -> Response:
    opened = dev_inbox.open_message(_dev_inbox_runtime(), g.workspace_id, email_id)
    if opened is None or opened.html is None:
        abort(404)
    return _framed(opened.html)


def _dev_inbox_runtime() -> Any:
    runtime = tools.get_runtime()
    if not runtime.settings.uses_dev_smtp_server:
        abort(404)  # a real provider has the mail: there is no inbox to show
    return runtime


def _framed(html: str) -> Response:
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = MESSAGE_POLICY
    return response


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    """A read that cannot fail for a signed-in workspace; if it does, a plain error page."""
    if result.get("error"):
        abort(500)
    return result


def _flash(result: dict[str, Any], done: str) -> None:
    error = result.get("error")
    flash(error["message"] if error else done, "error" if error else "done")


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 10_000))
    except ValueError:
        return 1


def _page_count(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def _day_start(day: str, *, next_day: bool = False) -> str | None:
    """A date field (YYYY-MM-DD) as the UTC midnight the history filter takes; the tool
    refuses what is not a date. `until` is inclusive, so it ends at the next midnight."""
    if not day:
        return None
    if next_day:
        try:
            day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        except ValueError:
            return day  # the tool says what is wrong with it
    return f"{day}T00:00:00+00:00"
