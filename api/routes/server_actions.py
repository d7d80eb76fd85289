"""Server lifecycle: connect, disconnect, refresh. Each sets what the registry wants, tells the
workers (pub/sub command or a task on the server's queue) and waits, bounded, for their answer.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import fields

from api.auth import require_admin
from api.context import db
from api.routes.servers import own_server, server_details
from api.schemas.servers import ServerDetailSchema
from common import control
from common.heartbeats import HEARTBEAT_INTERVAL_SECONDS, live_workers, require_worker
from common.queues import REFRESH_TOOLS, send, server_queue

blp = Blueprint(
    "server_actions", __name__, url_prefix="/api/v1/servers", description="Server lifecycle"
)

CONNECT_WAIT_SECONDS = 30.0
DISCONNECT_WAIT_SECONDS = 15.0
# A `*` worker hears of a new server at once (pub/sub) and at its next reconcile at the latest.
WORKER_APPEAR_SECONDS = HEARTBEAT_INTERVAL_SECONDS + 1.0


class RefreshedServerSchema(ServerDetailSchema):
    refresh = fields.Dict(metadata={"description": "the worker's answer: state, changes or error"})


def _serving_workers(slug: str) -> int:
    """Workers consuming the server's queue. Each answers a command for it (`closed` at once
    if it holds no session), so the count stays right even when a heartbeat is a beat behind."""
    queue = server_queue(slug)
    return sum(1 for w in live_workers() if queue in (w.get("queues") or ()))


def _set_desired(server_id: str, desired: str) -> Any:
    server = own_server(server_id, require_admin().org_id, for_update=True)
    server.desired_state = desired
    if desired == "disconnected":
        server.status = "disconnected"
    db().commit()
    return server


def _reloaded(server_id: str) -> dict[str, Any]:
    db().expire_all()
    return server_details(own_server(server_id, require_admin().org_id))


@blp.route("/<string:server_id>/connect")
class Connect(MethodView):
    @blp.response(200, ServerDetailSchema)
    def post(self, server_id: str):
        server = own_server(server_id, require_admin().org_id)
        require_worker(server.slug, within_s=WORKER_APPEAR_SECONDS)
        server = _set_desired(server_id, "connected")
        control.command("connect", server.id, server.slug, 1, CONNECT_WAIT_SECONDS)
        return _reloaded(server_id)


@blp.route("/<string:server_id>/disconnect")
class Disconnect(MethodView):
    @blp.response(200, ServerDetailSchema)
    def post(self, server_id: str):
        server = _set_desired(server_id, "disconnected")
        serving = _serving_workers(server.slug)  # counted before the command goes out
        control.command("disconnect", server.id, server.slug, serving, DISCONNECT_WAIT_SECONDS)
        return _reloaded(server_id)


@blp.route("/<string:server_id>/refresh")
class Refresh(MethodView):
    @blp.response(200, RefreshedServerSchema)
    def post(self, server_id: str):
        server = own_server(server_id, require_admin().org_id)
        require_worker(server.slug, within_s=WORKER_APPEAR_SECONDS)
        reply = control.new_reply_key()
        send(REFRESH_TOOLS, [server.id, reply], server_queue(server.slug))
        answers = control.collect_replies(reply, expected=1, timeout_s=CONNECT_WAIT_SECONDS)
        refresh = answers[0] if answers else {"state": "timeout"}
        return {**_reloaded(server_id), "refresh": refresh}
