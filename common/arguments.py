"""Tool-call arguments checked against the tool's inputSchema (design §2 step 4).

The schema's own `$schema` picks the draft; a schema without one is read as 2020-12. A validator
is compiled once per (tool id, definitionHash) and kept in a bounded in-process LRU: the hash
covers the inputSchema, so a changed definition compiles afresh and the old entry ages out.

Every failing path is reported (up to MAX_ERRORS), sorted, as a JSON pointer into `arguments`;
a missing required property is reported at the property's own path (`/a/0/b`).

A tool whose inputSchema is itself invalid (fails its metaschema, or holds a `$ref` that cannot
be resolved: remote references are never fetched) is not validated here: its calls go through
and the MCP server judges the arguments. A warning is logged once per (tool, definitionHash).
Refusing every call would turn a server's schema bug into an outage of that tool; validating
against a guess of what the schema meant could refuse calls the server would accept.
Formats (`"format": "email"`) are annotations, as the 2020-12 default says.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing.exceptions import Unresolvable

from common.errors import Unprocessable
from common.logs import get_logger
from common.registry import ToolRef

log = get_logger(__name__)

MAX_COMPILED = 2048
MAX_ERRORS = 200

_lock = threading.Lock()
_compiled: OrderedDict[tuple[str, str], Validator | None] = OrderedDict()


def _compile(schema: Any) -> tuple[Validator | None, str]:
    """(validator, "") or (None, why the schema is unusable)."""
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
    except (SchemaError, TypeError) as exc:
        return None, str(exc).splitlines()[0]
    return cls(schema), ""


def _skip(tool: ToolRef, reason: str) -> None:
    log.warning(
        "input_schema_invalid_validation_skipped",
        tool=tool.qualified_name,
        tool_id=tool.tool_id,
        definition_hash=tool.definition_hash,
        reason=reason,
    )


def validator(tool: ToolRef) -> Validator | None:
    """The compiled validator of this tool definition, or None when its schema is unusable."""
    cache_key = (tool.tool_id, tool.definition_hash)
    with _lock:
        if cache_key in _compiled:
            _compiled.move_to_end(cache_key)
            return _compiled[cache_key]
    compiled, problem = _compile(tool.input_schema)  # unlocked: a big schema stalls no one
    with _lock:
        if cache_key in _compiled:  # another thread compiled it meanwhile (and warned)
            return _compiled[cache_key]
        _compiled[cache_key] = compiled
        while len(_compiled) > MAX_COMPILED:
            _compiled.popitem(last=False)
    if problem:
        _skip(tool, problem)
    return compiled


def _disable(tool: ToolRef, reason: str) -> None:
    with _lock:
        cache_key = (tool.tool_id, tool.definition_hash)
        first = _compiled.get(cache_key) is not None
        _compiled[cache_key] = None
    if first:
        _skip(tool, reason)


def pointer(parts: Iterable[str | int]) -> str:
    """A JSON pointer (RFC 6901): "" is the arguments object itself."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _path(error: ValidationError) -> list[str | int]:
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [
            name
            for name in error.validator_value
            if name not in error.instance and error.message == f"{name!r} is a required property"
        ]
        if missing:
            path.append(missing[0])
    return path


def check(tool: ToolRef, arguments: Any) -> list[dict[str, str]]:
    """Every failure of `arguments` against the tool's inputSchema (empty: valid or skipped)."""
    compiled = validator(tool)
    if compiled is None:
        return []
    try:
        found = list(itertools.islice(compiled.iter_errors(arguments), MAX_ERRORS + 1))
    except Unresolvable as exc:
        _disable(tool, f"unresolvable reference: {exc}")
        return []
    located = sorted(
        ((_path(e), e) for e in found),
        key=lambda pair: ([(isinstance(p, str), p) for p in pair[0]], pair[1].message),
    )
    return [
        {"path": pointer(path), "keyword": str(e.validator), "message": e.message}
        for path, e in located
    ]


def validate_arguments(tool: ToolRef, arguments: Any) -> None:
    """Raise 422 `invalid_arguments` listing every failing path; nothing else happens."""
    errors = check(tool, arguments)
    if errors:
        raise Unprocessable(
            f"The arguments do not match the input schema of {tool.qualified_name}.",
            code="invalid_arguments",
            details={"errors": errors[:MAX_ERRORS], "truncated": len(errors) > MAX_ERRORS},
        )
