"""The permission matrix: the precedence rule on its own (`resolve`, pure), its SQL twin
(`permitted_clause`, checked against `resolve` on a full matrix), rule writes, and the hot-path
cache: no SQL on a hit, a change seen on the very next call once invalidated, in every process.

Tests touching Postgres or Redis take `clean_state`; the pure ones need neither.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select

from common.config import get_settings
from common.db import get_engine, new_session, session_scope
from common.models import McpToolPermission
from common.permissions import (
    PermissionCache,
    allowed_tool_ids,
    invalidate,
    is_allowed,
    is_valid_agent_type,
    load_rules,
    load_rules_many,
    resolve,
    write_rules,
)
from common.redis import get_redis
from common.registry import current_version, version_key
from tests.factories import insert_server, insert_tool

# (rules, agentType asked, PERMISSION_DEFAULT allows?) → (allowed, source)
PRECEDENCE = [
    # explicit beats wildcard and default, whichever way each points
    ({"researcher": True}, "researcher", False, (True, "explicit")),
    ({"researcher": False}, "researcher", True, (False, "explicit")),
    ({"researcher": True, "*": False}, "researcher", False, (True, "explicit")),
    ({"researcher": False, "*": True}, "researcher", True, (False, "explicit")),
    ({"researcher": True, "*": True}, "researcher", False, (True, "explicit")),
    ({"researcher": False, "*": False}, "researcher", True, (False, "explicit")),
    # wildcard beats default when the agentType has no rule of its own
    ({"*": True}, "researcher", False, (True, "wildcard")),
    ({"*": False}, "researcher", True, (False, "wildcard")),
    ({"*": True, "writer": False}, "researcher", False, (True, "wildcard")),
    ({"*": False, "writer": True}, "researcher", True, (False, "wildcard")),
    # no applicable rule: PERMISSION_DEFAULT decides, both ways
    ({}, "researcher", True, (True, "default")),
    ({}, "researcher", False, (False, "default")),
    ({"writer": False}, "researcher", True, (True, "default")),
    ({"writer": True}, "researcher", False, (False, "default")),
    # agent types are case-sensitive
    ({"Researcher": False}, "researcher", True, (True, "default")),
    # asking about "*" itself: its rule is the wildcard, never "explicit"
    ({"*": False}, "*", True, (False, "wildcard")),
    ({"researcher": False}, "*", True, (True, "default")),
]


@pytest.mark.parametrize(("rules", "agent_type", "default_allowed", "expected"), PRECEDENCE)
def test_resolve_applies_explicit_then_wildcard_then_default(
    rules, agent_type, default_allowed, expected
):
    assert resolve(rules, agent_type, default_allowed) == expected


def test_resolve_does_not_modify_the_rules_it_reads():
    rules = {"*": True}
    resolve(rules, "researcher", False)
    assert rules == {"*": True}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("researcher", True),
        ("team.alpha:v2_beta-1", True),
        ("a" * 64, True),
        ("*", True),
        ("a" * 65, False),
        ("", False),
        ("has space", False),
        ("semi;colon", False),
        ("researcher\n", False),
        ("**", False),
    ],
)
def test_agent_type_syntax_is_letters_digits_and_few_punctuation_or_the_wildcard(value, valid):
    assert is_valid_agent_type(value) is valid


def test_the_wildcard_can_be_refused_where_a_concrete_agent_type_is_needed():
    assert is_valid_agent_type("*", wildcard_ok=False) is False


def _rows() -> list[tuple[str, str, bool]]:
    with session_scope() as session:
        query = select(
            McpToolPermission.tool_id, McpToolPermission.agent_type, McpToolPermission.allowed
        )
        return sorted(tuple(row) for row in session.execute(query))


def test_write_rules_upserts_on_tool_and_agent_type_and_none_deletes(clean_state):
    tool = insert_tool(insert_server("demo"))
    with session_scope() as session:
        write_rules(session, [(tool.id, "researcher", True), (tool.id, "*", False)])
    with session_scope() as session:
        write_rules(session, [(tool.id, "researcher", False)])
    assert _rows() == [(tool.id, "*", False), (tool.id, "researcher", False)]
    with session_scope() as session:
        write_rules(session, [(tool.id, "*", None), (tool.id, "never-set", None)])
    assert _rows() == [(tool.id, "researcher", False)]


def test_write_rules_writes_nothing_until_the_caller_commits(clean_state):
    tool = insert_tool(insert_server("demo"))
    session = new_session()
    try:
        write_rules(session, [(tool.id, "researcher", True)])
        session.rollback()
    finally:
        session.close()
    assert _rows() == []


def test_load_rules_reads_every_rule_of_one_tool_only(clean_state):
    server = insert_server("demo")
    echo, other = insert_tool(server, "echo"), insert_tool(server, "other")
    with session_scope() as session:
        write_rules(session, [(echo.id, "researcher", True), (echo.id, "*", False)])
        write_rules(session, [(other.id, "researcher", False)])
    with session_scope() as session:
        assert load_rules(session, echo.id) == {"researcher": True, "*": False}
        assert load_rules(session, "no-such-tool") == {}
        some = load_rules_many(session, [echo.id, other.id], agent_types=["*"])
    assert some == {echo.id: {"*": False}}


def test_allowed_tool_ids_agrees_with_resolve_on_every_combination(clean_state):
    server = insert_server("demo")
    choices = (None, True, False)  # no rule, allow, deny
    expected_rules: dict[str, dict[str, bool]] = {}
    writes = []
    for n, (explicit, wildcard) in enumerate(itertools.product(choices, choices)):
        tool = insert_tool(server, f"tool{n}")
        expected_rules[tool.id] = {}
        if explicit is not None:
            writes.append((tool.id, "researcher", explicit))
            expected_rules[tool.id]["researcher"] = explicit
        if wildcard is not None:
            writes.append((tool.id, "*", wildcard))
            expected_rules[tool.id]["*"] = wildcard
    with session_scope() as session:
        write_rules(session, writes)
    for agent_type, default_allowed in itertools.product(("researcher", "writer"), (True, False)):
        expected = {
            tool_id
            for tool_id, rules in expected_rules.items()
            if resolve(rules, agent_type, default_allowed)[0]
        }
        with session_scope() as session:
            got = allowed_tool_ids(session, "default", agent_type, default_allowed)
        assert got == expected, (agent_type, default_allowed)


def test_allowed_tool_ids_lists_only_the_orgs_own_tools(clean_state):
    mine = insert_tool(insert_server("mine"))
    insert_tool(insert_server("theirs", org_id="other"))
    with session_scope() as session:
        assert allowed_tool_ids(session, "default", "researcher", True) == {mine.id}


def test_allowed_tool_ids_uses_permission_default_when_not_told(clean_state):
    tool = insert_tool(insert_server("demo"))
    with session_scope() as session:
        write_rules(session, [(tool.id, "writer", True)])  # not the asked agentType
    expected = {tool.id} if get_settings().permission_default_allowed else set()
    with session_scope() as session:
        assert allowed_tool_ids(session, "default", "researcher") == expected


@contextmanager
def count_sql() -> Iterator[list[str]]:
    """Every SQL statement the engine runs inside the block (instrumentation, not a mock)."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_is_allowed_answers_repeat_calls_without_touching_the_database(clean_state):
    tool = insert_tool(insert_server("demo"))
    with session_scope() as session:
        write_rules(session, [(tool.id, "*", False)])
    invalidate()
    cache = PermissionCache()
    assert cache.is_allowed(tool.id, "researcher") == (False, "wildcard")
    with count_sql() as statements:
        for _ in range(20):
            assert cache.is_allowed(tool.id, "researcher") == (False, "wildcard")
            assert cache.is_allowed(tool.id, "writer") == (False, "wildcard")
    assert statements == []


def test_a_tool_without_rules_is_cached_too(clean_state):
    tool = insert_tool(insert_server("demo"))
    cache = PermissionCache()
    assert cache.is_allowed(tool.id, "researcher") == (True, "default")
    with count_sql() as statements:
        assert cache.is_allowed(tool.id, "researcher") == (True, "default")
    assert statements == []


def test_a_committed_rule_change_is_seen_on_the_very_next_call(clean_state):
    tool = insert_tool(insert_server("demo"))
    cache = PermissionCache()
    assert cache.is_allowed(tool.id, "researcher") == (True, "default")
    with session_scope() as session:  # the commit itself replaces the registry token
        write_rules(session, [(tool.id, "researcher", False)])
    assert cache.is_allowed(tool.id, "researcher") == (False, "explicit")


def test_rules_cached_under_a_token_are_served_while_it_stands(clean_state):
    tool = insert_tool(insert_server("demo"))
    cache = PermissionCache()
    token = current_version()
    assert cache.is_allowed(tool.id, "researcher", token=token) == (True, "default")
    with session_scope() as session:
        write_rules(session, [(tool.id, "researcher", False)])
    # Under the token this call read before the change, its cached view stays consistent...
    assert cache.is_allowed(tool.id, "researcher", token=token) == (True, "default")
    invalidate()  # ...and the next call, under a new token, reloads.
    assert cache.is_allowed(tool.id, "researcher") == (False, "explicit")


def test_invalidation_reaches_every_process_cache(clean_state):
    tool = insert_tool(insert_server("demo"))
    peers = [PermissionCache() for _ in range(3)]  # each stands for another process
    assert all(p.is_allowed(tool.id, "researcher") == (True, "default") for p in peers)
    with session_scope() as session:
        write_rules(session, [(tool.id, "*", False)])
    invalidate()
    assert all(p.is_allowed(tool.id, "researcher") == (False, "wildcard") for p in peers)


def test_a_load_that_read_postgres_before_a_change_is_never_served_after_it(clean_state):
    tool = insert_tool(insert_server("demo"))
    cache = PermissionCache()
    # A reader takes the token, then reads Postgres just before a change commits...
    state = cache._state_for(current_version())
    with session_scope() as session:
        stale = load_rules(session, tool.id)
    with session_scope() as session:
        write_rules(session, [(tool.id, "researcher", False)])
    invalidate()
    # ...and files its (old) rules only after the change was invalidated.
    state.rules[tool.id] = stale
    assert cache.is_allowed(tool.id, "researcher") == (False, "explicit")


def test_a_lost_version_key_starts_a_fresh_token_instead_of_reusing_an_old_one(clean_state):
    tool = insert_tool(insert_server("demo"))
    cache = PermissionCache()
    before = current_version()
    assert cache.is_allowed(tool.id, "researcher") == (True, "default")
    with session_scope() as session:
        write_rules(session, [(tool.id, "researcher", False)])
    get_redis().delete(version_key())  # e.g. Redis restarted without persistence
    assert current_version() != before
    assert cache.is_allowed(tool.id, "researcher") == (False, "explicit")


def test_cached_rules_expire_after_max_age_even_without_invalidation(clean_state):
    tool = insert_tool(insert_server("demo"))
    cache = PermissionCache(max_age=0)
    assert cache.is_allowed(tool.id, "researcher") == (True, "default")
    with session_scope() as session:
        write_rules(session, [(tool.id, "researcher", False)])
    assert cache.is_allowed(tool.id, "researcher") == (False, "explicit")


def test_module_is_allowed_reads_through_the_process_cache(clean_state):
    tool = insert_tool(insert_server("demo"))
    with session_scope() as session:
        write_rules(session, [(tool.id, "*", False), (tool.id, "researcher", True)])
    invalidate()
    assert is_allowed(tool.id, "researcher") == (True, "explicit")
    assert is_allowed(tool.id, "writer") == (False, "wildcard")


def test_is_allowed_can_load_through_a_callers_session(clean_state):
    tool = insert_tool(insert_server("demo"))
    with session_scope() as session:
        write_rules(session, [(tool.id, "researcher", False)])
    invalidate()
    with session_scope() as session:
        assert PermissionCache().is_allowed(tool.id, "researcher", session) == (False, "explicit")
