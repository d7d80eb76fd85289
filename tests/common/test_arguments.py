"""Argument validation against a tool's inputSchema: precise JSON-pointer paths for nested
objects and arrays, every failure reported and sorted, the declared draft honoured (2020-12 by
default), validators compiled once per definition, and unusable schemas skipped with one warning.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from common import arguments
from common.arguments import check, pointer, validate_arguments, validator
from common.errors import Unprocessable
from common.registry import ToolRef

_ids = itertools.count()


def tool(schema: dict[str, Any], definition_hash: str = "h1", tool_id: str | None = None):
    return ToolRef(
        tool_id=tool_id or f"tool-{next(_ids)}",
        name="t",
        server_id="srv",
        server_slug="demo",
        org_id="default",
        is_enabled=True,
        removed=False,
        server_desired_state="connected",
        input_schema=schema,
        annotations={},
        cache_ttl_seconds=None,
        definition_hash=definition_hash,
    )


def paths(schema: dict[str, Any], value: Any) -> list[tuple[str, str]]:
    return [(e["path"], e["keyword"]) for e in check(tool(schema), value)]


@pytest.fixture
def warnings(monkeypatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    class Recorder:
        def warning(self, event: str, **fields: Any) -> None:
            seen.append({"event": event, **fields})

    monkeypatch.setattr(arguments, "log", Recorder())
    return seen


ORDER = {
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "address": {
                    "type": "object",
                    "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                    "required": ["zip"],
                },
            },
            "required": ["name", "address"],
        },
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer", "minimum": 1},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["sku", "qty"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["customer", "lines"],
}


def test_valid_arguments_have_no_errors():
    good = {
        "customer": {"name": "Ada", "address": {"zip": "12345"}},
        "lines": [{"sku": "a", "qty": 2, "tags": ["x"]}],
    }
    assert paths(ORDER, good) == []


def test_nested_objects_and_arrays_give_every_failing_path_sorted():
    bad = {
        "customer": {"name": "", "address": {"zip": "1234x"}},
        "lines": [
            {"sku": "a", "qty": 0},
            {"qty": "2", "extra": True},
            {"sku": "c", "qty": 1, "tags": ["ok", 3]},
        ],
    }
    assert paths(ORDER, bad) == [
        ("/customer/address/zip", "pattern"),
        ("/customer/name", "minLength"),
        ("/lines/0/qty", "minimum"),
        ("/lines/1", "additionalProperties"),
        ("/lines/1/qty", "type"),
        ("/lines/1/sku", "required"),
        ("/lines/2/tags/1", "type"),
    ]


def test_a_missing_required_property_is_reported_at_its_own_path():
    errors = check(tool(ORDER), {"customer": {"address": {}}})
    assert [(e["path"], e["message"]) for e in errors] == [
        ("/customer/address/zip", "'zip' is a required property"),
        ("/customer/name", "'name' is a required property"),
        ("/lines", "'lines' is a required property"),
    ]


def test_array_indexes_sort_as_numbers():
    schema = {"type": "array", "items": {"type": "integer"}}
    value = ["x" if i in (2, 10) else i for i in range(12)]
    assert paths(schema, value) == [("/2", "type"), ("/10", "type")]


def test_pointer_escapes_slash_and_tilde():
    assert pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"
    assert pointer([]) == ""
    schema = {"type": "object", "properties": {"a/b": {"type": "integer"}}}
    assert paths(schema, {"a/b": "x"}) == [("/a~1b", "type")]


def test_a_schema_without_dollar_schema_is_read_as_2020_12():
    schema = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}
    assert paths(schema, ["x", 1]) == [("/0", "type"), ("/1", "type")]


def test_the_draft_a_schema_declares_is_honoured():
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [{"type": "integer"}, {"type": "string"}],
    }
    assert paths(draft7, ["x", 1]) == [("/0", "type"), ("/1", "type")]
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "maximum": 5,
        "exclusiveMaximum": True,
    }
    assert paths(draft4, 5) == [("", "maximum")]


def test_a_validator_is_compiled_once_per_definition_hash():
    first = tool(ORDER, "h1", tool_id="same")
    assert validator(first) is validator(tool(ORDER, "h1", tool_id="same"))
    assert validator(first) is not validator(tool(ORDER, "h2", tool_id="same"))


def test_the_compiled_validators_are_bounded(monkeypatch):
    monkeypatch.setattr(arguments, "MAX_COMPILED", 3)
    for n in range(5):
        validator(tool({"type": "object"}, f"b{n}"))
    assert len(arguments._compiled) == 3


def test_an_invalid_schema_is_skipped_with_one_warning(warnings):
    broken = tool({"type": "nope"})
    assert check(broken, {"anything": 1}) == []
    assert check(broken, "not even an object") == []
    assert [w["event"] for w in warnings] == ["input_schema_invalid_validation_skipped"]
    assert warnings[0]["tool_id"] == broken.tool_id


def test_an_unresolvable_reference_is_skipped_with_one_warning(warnings):
    remote = tool({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}})
    assert check(remote, {"a": 1}) == []
    assert check(remote, {"a": 2}) == []
    assert len(warnings) == 1 and "unresolvable" in warnings[0]["reason"]
    local = tool({"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}})
    assert check(local, {"b": 1}) == []
    assert len(warnings) == 2


def test_a_broken_tool_does_not_affect_another_tool(warnings):
    assert check(tool({"type": 12}), {"x": 1}) == []
    assert paths({"type": "object", "required": ["x"]}, {}) == [("/x", "required")]


def test_validate_arguments_raises_invalid_arguments_with_the_errors():
    with pytest.raises(Unprocessable) as raised:
        validate_arguments(tool(ORDER), {"customer": {"name": "A", "address": {"zip": 1}}})
    error = raised.value
    assert (error.status, error.code) == (422, "invalid_arguments")
    assert "demo.t" in error.message
    assert error.details["truncated"] is False
    assert [e["path"] for e in error.details["errors"]] == ["/customer/address/zip", "/lines"]


def test_a_flood_of_errors_is_capped_and_says_so(monkeypatch):
    monkeypatch.setattr(arguments, "MAX_ERRORS", 10)
    schema = {"type": "array", "items": {"type": "integer"}}
    with pytest.raises(Unprocessable) as raised:
        validate_arguments(tool(schema), ["x"] * 50)
    assert len(raised.value.details["errors"]) == 10
    assert raised.value.details["truncated"] is True
