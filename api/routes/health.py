"""Liveness and dependencies: `{status, db, redis, workers}`; 503 when Postgres or Redis is down."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from common.db import ping_db
from common.heartbeats import live_workers
from common.redis import ping_redis

blp = Blueprint("health", __name__, description="Gateway health")


class HealthSchema(Schema):
    status = fields.String(metadata={"description": "ok or degraded"})
    db = fields.Boolean()
    redis = fields.Boolean()
    workers = fields.Integer(metadata={"description": "live worker processes (heartbeats)"})


@blp.route("/health")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="Postgres or Redis unreachable")
    def get(self):
        db_ok, redis_ok = ping_db(), ping_redis()
        workers = len(live_workers()) if redis_ok else 0
        body = {"db": db_ok, "redis": redis_ok, "workers": workers}
        if db_ok and redis_ok:
            return {"status": "ok", **body}
        return {"status": "degraded", **body}, 503
