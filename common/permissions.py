"""The permission matrix (design §2 step 3): may this agentType call this tool?

Precedence: the rule for (tool, the caller's agentType) wins over the rule for (tool, "*"),
which wins over PERMISSION_DEFAULT. `resolve` is that rule as a pure function, and
`permitted_clause` is the same rule in SQL, so tool lists can be filtered (and paginated)
by the database.

Hot path (`is_allowed`, once per tool call). Each process caches every tool's rules in memory,
tagged with the *registry token* (`common.registry`, one Redis key that also versions tool
lookups). A call passes the token its tool lookup just read (no extra round trip) and uses the
cached rules only if they were loaded under it; otherwise it loads the tool's rules from Postgres
once. Every change writes a fresh random token after its transaction commits (`invalidate`, and
the registry's session events), so the very next call in every process misses and reloads.

Why not a Redis hash per tool, filled on a miss and deleted on change? A fill that read
Postgres just before a change commits can write the old rules back after the change deleted
the hash, and they stay stale until a TTL. Here a reader takes the token *before* it reads
Postgres, so rules read before a commit are filed under the token that commit replaces and are
never served after it. Tokens are random rather than a counter, so a flushed Redis cannot bring
an old token back. Safety nets: cached rules also expire after MAX_AGE_SECONDS (bounding a lost
invalidation), and while Redis is unreachable every call reads Postgres directly.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis
from sqlalchemy import ColumnElement, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from common import registry
from common.config import get_settings
from common.db import new_session
from common.ids import new_id
from common.logs import get_logger
from common.models import McpServer, McpTool, McpToolPermission, utcnow

log = get_logger(__name__)

WILDCARD = "*"
AGENT_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
RULE_AGENT_TYPE_PATTERN = r"^(\*|[A-Za-z0-9_.:-]{1,64})$"  # a rule may also name "*"
_AGENT_TYPE = re.compile(AGENT_TYPE_PATTERN)
MAX_AGE_SECONDS = 60.0
MAX_CACHED_TOOLS = 50_000

Rules = dict[str, bool]  # agentType (or "*") → allowed


def is_valid_agent_type(value: str, *, wildcard_ok: bool = True) -> bool:
    return (wildcard_ok and value == WILDCARD) or bool(_AGENT_TYPE.fullmatch(value))


def resolve(rules: Rules, agent_type: str, default_allowed: bool) -> tuple[bool, str]:
    """(allowed, source) for one tool; source is `explicit`, `wildcard` or `default`.

    Asking for agentType "*" itself answers what applies to agent types without a rule of their
    own, so its rule counts as the wildcard.
    """
    if agent_type != WILDCARD and agent_type in rules:
        return rules[agent_type], "explicit"
    if WILDCARD in rules:
        return rules[WILDCARD], "wildcard"
    return default_allowed, "default"


def permitted_clause(agent_type: str, default_allowed: bool) -> ColumnElement[bool]:
    """SQL for `resolve(...)[0]` on McpTool rows: coalesce(explicit, wildcard, default)."""
    perm = McpToolPermission
    explicit = (
        select(perm.allowed)
        .where(perm.tool_id == McpTool.id, perm.agent_type == agent_type)
        .scalar_subquery()
    )
    wildcard = (
        select(perm.allowed)
        .where(perm.tool_id == McpTool.id, perm.agent_type == WILDCARD)
        .scalar_subquery()
    )
    choices = [wildcard, literal(default_allowed)]
    if agent_type != WILDCARD:
        choices.insert(0, explicit)
    return func.coalesce(*choices).is_(True)


def load_rules(session: Session, tool_id: str) -> Rules:
    """Every rule of one tool, straight from Postgres."""
    return load_rules_many(session, [tool_id]).get(tool_id, {})


def load_rules_many(
    session: Session, tool_ids: Iterable[str], agent_types: Iterable[str] | None = None
) -> dict[str, Rules]:
    """tool_id → rules (optionally only some agent types); tools without rules are absent."""
    perm = McpToolPermission
    query = select(perm.tool_id, perm.agent_type, perm.allowed).where(
        perm.tool_id.in_(list(tool_ids))
    )
    if agent_types is not None:
        query = query.where(perm.agent_type.in_(list(agent_types)))
    found: dict[str, Rules] = {}
    for tool_id, agent_type, allowed in session.execute(query):
        found.setdefault(tool_id, {})[agent_type] = allowed
    return found


def allowed_tool_ids(
    session: Session, org_id: str, agent_type: str, default_allowed: bool | None = None
) -> set[str]:
    """Ids of the org's tools this agentType may call (removed tools included)."""
    if default_allowed is None:
        default_allowed = get_settings().permission_default_allowed
    query = (
        select(McpTool.id)
        .join(McpServer, McpTool.server_id == McpServer.id)
        .where(McpServer.org_id == org_id, permitted_clause(agent_type, default_allowed))
    )
    return set(session.scalars(query))


def write_rules(session: Session, rules: list[tuple[str, str, bool | None]]) -> None:
    """Upsert (tool_id, agentType, allowed) rules; `allowed=None` deletes the rule.

    Does not commit: the caller commits the batch as one transaction, then calls `invalidate`.
    """
    now = utcnow()
    upserts = [
        dict(id=new_id(), tool_id=t, agent_type=a, allowed=v, created_at=now, updated_at=now)
        for t, a, v in rules
        if v is not None
    ]
    if upserts:
        stmt = insert(McpToolPermission).values(upserts)
        stmt = stmt.on_conflict_do_update(
            index_elements=[McpToolPermission.tool_id, McpToolPermission.agent_type],
            set_={"allowed": stmt.excluded.allowed, "updated_at": stmt.excluded.updated_at},
        )
        session.execute(stmt)
    for tool_id, agent_type, allowed in rules:
        if allowed is None:
            session.execute(
                delete(McpToolPermission).where(
                    McpToolPermission.tool_id == tool_id,
                    McpToolPermission.agent_type == agent_type,
                )
            )


def invalidate() -> None:
    """Make every process reload rules on its next call. Call after the change commits."""
    registry.bump_version()


@dataclass
class _State:
    token: str
    born: float = field(default_factory=time.monotonic)
    rules: dict[str, Rules] = field(default_factory=dict)


class PermissionCache:
    """One process's cached rules (module-level `_cache`; tests build more to act as peers)."""

    def __init__(self, max_age: float = MAX_AGE_SECONDS) -> None:
        self.max_age = max_age
        self._state: _State | None = None
        self._lock = threading.Lock()

    def _state_for(self, token: str) -> _State:
        with self._lock:
            state = self._state
            if (
                state is None
                or state.token != token
                or time.monotonic() - state.born > self.max_age
            ):
                state = self._state = _State(token)
            return state

    def rules(
        self, tool_id: str, session: Session | None = None, token: str | None = None
    ) -> Rules:
        try:
            state = self._state_for(token or registry.current_version())
        except redis.RedisError:
            log.warning("permission_cache_bypassed", reason="redis unreachable")
            self._state = None
            return _load(tool_id, session)
        cached = state.rules.get(tool_id)
        if cached is None:
            # Filed under the token read above: if a change commits meanwhile, it replaces
            # that token and this entry is never served again.
            cached = _load(tool_id, session)
            if len(state.rules) < MAX_CACHED_TOOLS:
                state.rules[tool_id] = cached
        return cached

    def is_allowed(
        self,
        tool_id: str,
        agent_type: str,
        session: Session | None = None,
        token: str | None = None,
    ) -> tuple[bool, str]:
        default_allowed = get_settings().permission_default_allowed
        return resolve(self.rules(tool_id, session, token), agent_type, default_allowed)


def _load(tool_id: str, session: Session | None) -> Rules:
    if session is not None:
        return load_rules(session, tool_id)
    with new_session() as own:
        return load_rules(own, tool_id)


_cache = PermissionCache()


def is_allowed(
    tool_id: str, agent_type: str, session: Session | None = None, token: str | None = None
) -> tuple[bool, str]:
    """(allowed, source) for a call. `token`: the registry token the caller already read this
    call (no Redis round trip then); otherwise one GET. Postgres only on a cache miss."""
    return _cache.is_allowed(tool_id, agent_type, session, token)
