"""API keys (admin only), scoped to the caller's org.

Minting stores the key's SHA-256 and a short display prefix, never the key: the plaintext is in the
201 response and nowhere else. Revoking sets `revokedAt`; auth refuses the key from its very next
request. Revoking is idempotent: revoking a revoked key answers 204 again and keeps the first
`revokedAt`. Another org's key ids answer 404, as if they did not exist.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import inspect, select

from api.auth import current_caller, require_admin
from api.context import db
from api.pagination import PageArgs, paginate
from api.schemas.common import GatewayErrorSchema
from api.schemas.keys import KeyCreatedSchema, KeyCreateSchema, KeyPageSchema
from common import apikeys
from common.errors import NotFound
from common.ids import hash_api_key, new_api_key
from common.models import ApiKey, utcnow

blp = Blueprint("keys", __name__, url_prefix="/api/v1/keys", description="API keys (admin)")

PREFIX_LENGTH = 12


@blp.before_request
def _admin_only() -> None:
    require_admin()  # before the body is parsed: non-admins learn nothing about the schema


def _columns(row: ApiKey) -> dict[str, Any]:
    return {attr.key: getattr(row, attr.key) for attr in inspect(row).mapper.column_attrs}


@blp.route("")
class Keys(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, KeyPageSchema)
    @blp.alt_response(403, schema=GatewayErrorSchema, description="not an admin key")
    def get(self, args: dict):
        caller = current_caller()
        query = select(ApiKey).where(ApiKey.org_id == caller.org_id)
        items, cursor = paginate(db(), query, ApiKey.id, args)
        return {"items": items, "nextCursor": cursor}

    @blp.arguments(KeyCreateSchema)
    @blp.response(201, KeyCreatedSchema)
    @blp.alt_response(403, schema=GatewayErrorSchema, description="not an admin key")
    def post(self, data: dict):
        caller = current_caller()
        plaintext = new_api_key()
        row = ApiKey(
            **data,
            key_hash=hash_api_key(plaintext),
            prefix=plaintext[:PREFIX_LENGTH],
            org_id=caller.org_id,
        )
        session = db()
        session.add(row)
        session.commit()
        return {**_columns(row), "key": plaintext}


@blp.route("/<string:key_id>")
class KeyById(MethodView):
    @blp.response(204)
    @blp.alt_response(404, schema=GatewayErrorSchema, description="no such key in this org")
    def delete(self, key_id: str):
        caller = current_caller()
        session = db()
        row = session.scalar(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == caller.org_id)
        )
        if row is None:
            raise NotFound("No API key with this id.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.commit()
        apikeys.forget(row.key_hash)
