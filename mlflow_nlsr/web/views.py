"""The ``/nlsr/`` pages: the jobs list, one version's review page, and its approve / reject form.

Server-rendered Jinja2 (no JavaScript). The job store and audit trail are read directly; everything
in MLflow (version tags, the realignment report, the gate run's metrics.json, the plot) is read
through the server's own REST routes as the signed-in user (:mod:`.reads`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from mlflow_nlsr import lineage
from mlflow_nlsr.errors import NLSRError
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.web import model
from mlflow_nlsr.web.access import OpenAccess
from mlflow_nlsr.web.reads import GATE_METRICS, REPORT_NAME, ServerReads, mlflow_version_url, plot_url

log = logging.getLogger(__name__)
PER_PAGE = 25
bp = Blueprint("nlsr_web", __name__, url_prefix="/nlsr", template_folder="templates")


@dataclass(frozen=True)
class WebContext:
    """What the pages need from the app: the job store, the access policy and the decision service."""

    store: Callable[[], JobStore]
    access: OpenAccess
    service: Callable[[], Any]


def _ctx() -> WebContext:
    return current_app.extensions["nlsr_web"]  # type: ignore[no-any-return]


def _reads() -> ServerReads:
    headers = (
        {"Authorization": request.headers["Authorization"]} if "Authorization" in request.headers else {}
    )
    return ServerReads(current_app, headers)


@bp.app_template_global()
def mlflow_link(name: str, version: str) -> str:
    """Link into MLflow's own model-version page."""
    return mlflow_version_url(name, version)


@bp.route("/", methods=["GET"])
def jobs() -> Any:
    """Newest jobs first, filtered by state and model, one page at a time."""
    ctx = _ctx()
    state, name = request.args.get("state") or None, request.args.get("model") or None
    try:
        found = ctx.store().list_jobs(model_name=name, states=[state] if state else None)
    except NLSRError as exc:
        return render_template("nlsr/error.html", message=str(exc), user=ctx.access.user()), 400
    visible = [j for j in reversed(found) if ctx.access.can_read(j.model_name)]
    shown, pages = model.page_of(visible, request.args.get("page", 1, type=int) or 1, PER_PAGE)
    rows = []
    for job in shown:
        events = ctx.store().audit_trail(job.model_name, job.version)
        rows.append(model.JobRow(job, model.stage_timings(events), model.registered_by(events)))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
    return render_template(
        "nlsr/jobs.html", rows=rows, page=page, pages=pages, total=len(visible), state=state, model=name,
        states=[s.value for s in JobState] + [model.AWAITING_APPROVAL], stages=[s for s, _ in model.STAGES],
        user=ctx.access.user(),
    )  # fmt: skip


def _realigned_ref(job: Any, source_tags: dict[str, str]) -> tuple[str, str] | None:
    """(registered model, version) of the version the job registered, or None before registration."""
    ref = source_tags.get(lineage.REALIGNED_VERSION)
    if ref and "/" in ref:
        target, _, version = ref.rpartition("/")
        return target, version
    if job.realigned_version:
        return job.model_name, str(job.realigned_version)
    return None


def _tags(fetched: Any) -> tuple[dict[str, Any], dict[str, str]]:
    mv = (fetched.json() or {}).get("model_version") or {} if fetched.ok else {}
    return mv, {t["key"]: t["value"] for t in mv.get("tags") or []}


def _gate_samples(reads: ServerReads, job: Any) -> tuple[dict[str, Any], str | None]:
    run_id = reads.gate_run_id(lineage.gate_run_name(job.model_name, job.version))
    if run_id is None:
        return {}, "no gate run found"
    fetched = reads.run_artifact(run_id, GATE_METRICS)
    if not fetched.ok:
        return {}, fetched.error()
    return dict((fetched.json() or {}).get("metric_samples") or {}), None


def _output(reads: ServerReads, job: Any, out: tuple[str, str] | None) -> dict[str, Any]:
    """The realigned version's tags, its nlsr_report.json and the gate item counts (with what failed)."""
    data: dict[str, Any] = {"out_mv": {}, "out_tags": {}, "report": None, "samples": {}, "problems": []}
    if out is None:
        return data
    data["out_mv"], data["out_tags"] = _tags(reads.model_version(*out))
    fetched = reads.version_artifact(*out, REPORT_NAME)
    data["report"] = fetched.json() if fetched.ok else None
    if not fetched.ok:
        data["problems"].append(f"{REPORT_NAME}: {fetched.error()}")
    data["samples"], problem = _gate_samples(reads, job)
    if problem:
        data["problems"].append(f"gate metrics.json: {problem}")
    return data


@bp.route("/models/<name>/versions/<version>", methods=["GET"])
def version_page(name: str, version: str) -> Any:
    """Everything a reviewer needs about one version: verdict, numbers, plot, lineage, audit trail."""
    ctx = _ctx()
    if not ctx.access.can_read(name):
        abort(403)
    reads = _reads()
    mv, tags = _tags(reads.model_version(name, version))
    job = ctx.store().get(name, version)
    if job is None and tags.get(lineage.SOURCE_MODEL):  # a realigned version: show its source's page
        source, of = tags[lineage.SOURCE_MODEL], tags.get(lineage.SOURCE_VERSION, "")
        return redirect(url_for(".version_page", name=source, version=of))
    if job is None and not mv:
        abort(404)
    result = dict(job.result or {}) if job is not None else {}
    out = _realigned_ref(job, tags) if job is not None else None
    data = _output(reads, job, out)
    rules = model.rule_rows(result.get("verdict"))
    events = ctx.store().audit_trail(name, version) if job is not None else []
    awaiting = job is not None and str(job.state) == model.AWAITING_APPROVAL
    can_decide = awaiting and ctx.access.can_manage(name)
    return render_template(
        "nlsr/version.html", name=name, version=version, job=job, mv=mv, tags=tags, result=result,
        rules=rules, hints=model.fix_hints(rules, data["report"]), roles=model.ROLES,
        metrics=model.metric_rows(result.get("metrics"), data["samples"]),
        attempts=model.calibration_attempts(data["report"]), report=data["report"] or {}, out=out,
        out_mv=data["out_mv"], out_tags=data["out_tags"], plot=plot_url(*out) if out else None,
        events=events, timings=model.stage_timings(events), registered_by=model.registered_by(events),
        decided=model.final_decision(events, str(job.state)) if job is not None else None,
        problems=data["problems"], awaiting=awaiting, can_decide=can_decide, login=ctx.access.login,
        csrf_token=ctx.access.csrf_token() if can_decide else "", user=ctx.access.user(),
    )  # fmt: skip


@bp.route("/models/<name>/versions/<version>/decision", methods=["POST"])
def decide(name: str, version: str) -> Any:
    """Approve or reject a version awaiting approval (MANAGE on the model, a valid CSRF token)."""
    ctx = _ctx()
    user = ctx.access.user()
    if user is None or not ctx.access.can_manage(name):
        abort(403, "approving or rejecting needs MANAGE permission on the registered model")
    if not ctx.access.check_csrf(request.form.get("csrf_token")):
        abort(400, "the form's CSRF token is missing or expired; reload the page")
    action, text = request.form.get("action"), (request.form.get("comment") or "").strip()
    if action not in ("approve", "reject"):
        abort(400, "action must be approve or reject")
    if action == "reject" and not text:
        abort(400, "a rejection needs a reason")
    from mlflow_nlsr.service import governance  # lazily: it loads the orchestrator (torch)

    try:
        if action == "approve":
            governance.approve(ctx.service(), name, version, actor=user, comment=text or None)
        else:
            governance.reject(ctx.service(), name, version, actor=user, reason=text)
    except NLSRError as exc:
        return render_template("nlsr/error.html", message=str(exc), user=user), 409
    return redirect(url_for(".version_page", name=name, version=version), code=303)


def register(app: Any, context: WebContext) -> None:
    """Add the pages to MLflow's Flask app (idempotent)."""
    app.extensions["nlsr_web"] = context
    if "nlsr_web" not in app.blueprints:
        app.register_blueprint(bp)
