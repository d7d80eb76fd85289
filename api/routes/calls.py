"""`POST /api/v1/tools/call`: sync (wait up to waitMs, then 200 or 202) or async (202 at once).
`GET /api/v1/jobs/<jobId>`: the job as it stands, for its caller or an admin."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_caller
from api.dispatch import enqueue, identity_for, job_view, resolve_tool, visible_job
from api.schemas.calls import CallRequestSchema, JobSchema
from common import jobs

blp = Blueprint("calls", __name__, url_prefix="/api/v1", description="Tool calls and jobs")

DEFAULT_WAIT_MS = 30_000


def _accepted(job: dict):
    location = url_for("calls.Job", job_id=job["jobId"])
    return job_view(job), 202, {"Location": location}


@blp.route("/tools/call")
class ToolCall(MethodView):
    @blp.arguments(CallRequestSchema)
    @blp.response(200, JobSchema, description="The call finished within waitMs")
    @blp.alt_response(202, schema=JobSchema, description="Queued or still running: poll Location")
    def post(self, body):
        caller = current_caller()
        who = identity_for(caller, body.get("onBehalfOf"))
        tool = resolve_tool(caller.org_id, body)
        job_id = enqueue(caller, who, tool, body)
        if body["mode"] == "async":
            return _accepted(jobs.get(job_id))
        job = jobs.wait(job_id, body.get("waitMs", DEFAULT_WAIT_MS))
        if job["status"] in jobs.TERMINAL:
            return job_view(job)
        return _accepted(job)


@blp.route("/jobs/<string:job_id>")
class Job(MethodView):
    @blp.response(200, JobSchema)
    def get(self, job_id):
        return job_view(visible_job(current_caller(), job_id))
