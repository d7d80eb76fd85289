"""`POST /api/v1/tools/call`: permission, argument validation, cache, then sync (wait up to
waitMs, then 200 or 202) or async (202 at once). `GET /api/v1/jobs/<jobId>`: the job as it
stands, for its caller or an admin."""

from __future__ import annotations

import time

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_caller
from api.dispatch import authorize, call, identity_for, job_view, resolve_tool, visible_job
from api.schemas.calls import CallRequestSchema, JobSchema
from api.schemas.common import GatewayErrorSchema as ErrorSchema
from common import jobs
from common.arguments import validate_arguments
from common.logs import get_logger
from common.metrics import observe_tool_call
from common.usage import usage_status

log = get_logger(__name__)

blp = Blueprint("calls", __name__, url_prefix="/api/v1", description="Tool calls and jobs")


def _accepted(job: dict):
    location = url_for("calls.Job", job_id=job["jobId"])
    return job_view(job), 202, {"Location": location}


@blp.route("/tools/call")
class ToolCall(MethodView):
    @blp.arguments(CallRequestSchema())  # an instance: webargs would build one per request
    @blp.response(200, JobSchema, description="Finished within waitMs, or a cache hit")
    @blp.alt_response(202, schema=JobSchema, description="Queued or still running: poll Location")
    @blp.alt_response(403, schema=ErrorSchema, description="permission_denied by the matrix")
    @blp.alt_response(422, schema=ErrorSchema, description="invalid_arguments: failing paths")
    @blp.alt_response(503, schema=ErrorSchema, description="no_worker serves the tool's server")
    def post(self, body):
        started = time.perf_counter()
        caller = current_caller()
        who = identity_for(caller, body.get("onBehalfOf"))
        tool = resolve_tool(caller.org_id, body)
        authorize(caller, who, tool, body["arguments"])
        validate_arguments(tool, body["arguments"])
        job = call(caller, who, tool, body, started)
        observe_tool_call(tool.qualified_name, usage_status(job))
        log.info(
            "tool_call",
            job_id=job["jobId"],
            tool=tool.qualified_name,
            caller=who.caller_id,
            status=job["status"],
            cached=bool(job.get("cached")),
        )
        if job["status"] in jobs.TERMINAL:
            return job_view(job)
        return _accepted(job)


@blp.route("/jobs/<string:job_id>")
class Job(MethodView):
    @blp.response(200, JobSchema)
    def get(self, job_id):
        return job_view(visible_job(current_caller(), job_id))
