"""Bearer key → Caller. The bootstrap GATEWAY_ADMIN_TOKEN is the org's admin; other keys are
looked up by hash (the key itself is never stored). Revocation takes effect on the next request.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict, dataclass

from flask import g, request

from common import apikeys
from common.config import get_settings
from common.db import new_session
from common.errors import Forbidden, Unauthorized
from common.ids import hash_api_key

ROLES = ("admin", "service", "agent")
CALLER_TYPES = ("agent", "skill", "user")


@dataclass(frozen=True)
class Caller:
    caller_id: str
    caller_type: str
    agent_type: str
    org_id: str
    role: str
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def _bootstrap_admin() -> Caller:
    return Caller("admin", "user", "admin", get_settings().default_org_id, "admin")


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A valid API key is required (Authorization: Bearer <key>).")
    return token.strip()


def authenticate() -> Caller:
    token = _bearer_token()
    if hmac.compare_digest(token.encode(), get_settings().admin_token.encode()):
        return _bootstrap_admin()
    identity = apikeys.lookup(new_session, hash_api_key(token))
    if identity is None:
        raise Unauthorized("A valid API key is required (Authorization: Bearer <key>).")
    return Caller(**identity)


def current_caller() -> Caller:
    caller = g.get("caller")
    if caller is None:
        caller = g.caller = authenticate()
    return caller


def require_admin() -> Caller:
    caller = current_caller()
    if not caller.is_admin:
        raise Forbidden("This action needs an admin key.")
    return caller
