"""common.config.load_settings: every bad value is refused with an error naming its variable,
and `.env.example` (with the README's table generated from it) lists every variable with the
code's defaults.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from common import config
from common.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 32
VALID = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/mcp_gateway",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "GATEWAY_ADMIN_TOKEN": TOKEN,
    "SECRET_KEY": "s" * 16,
}
# Where .env.example deliberately differs from the code's default: `make run` allows the
# commands the quickstart uses; unset, no stdio command may run.
EXAMPLE_OVERRIDES = {"STDIO_COMMAND_ALLOWLIST"}


def example_variables() -> dict[str, str]:
    pairs = re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    return dict(pairs)


def variables_config_reads() -> set[str]:
    source = Path(config.__file__).read_text()
    return set(re.findall(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|PORT)"', source))


@pytest.fixture
def env(monkeypatch):
    """A clean, valid environment; tests break one variable at a time."""
    for name in variables_config_reads() | set(example_variables()):
        monkeypatch.delenv(name, raising=False)
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_a_valid_environment_loads_with_the_documented_defaults(env):
    settings = load_settings()

    assert settings.port == 3100
    assert settings.permission_default == "allow"
    assert settings.cache_policy == "readonly"
    assert settings.allow_private_urls is False
    assert settings.stdio_command_allowlist == ()
    assert settings.redis_prefix == "mcpgw:"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", None),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("REDIS_URL", None),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("GATEWAY_ADMIN_TOKEN", None),
        ("GATEWAY_ADMIN_TOKEN", "t" * 31),
        ("SECRET_KEY", None),
        ("SECRET_KEY", "short"),
        ("PORT", "31OO"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("LOG_LEVEL", "verbose"),
        ("PERMISSION_DEFAULT", "maybe"),
        ("CACHE_POLICY", "sometimes"),
        ("ALLOW_PRIVATE_URLS", "perhaps"),
        ("CACHE_TTL_SECONDS", "-1"),
        ("HEALTH_PING_INTERVAL_SECONDS", "0"),
        ("TOOL_REFRESH_INTERVAL_SECONDS", "5m"),
        ("JOB_TTL_SECONDS", "10"),
        ("WORKER_CONCURRENCY", "0"),
        ("WAIT_MS_MAX", "2.5"),
        ("CALL_TIMEOUT_MS", "0"),
        ("CALL_TIMEOUT_MS_MAX", "999"),
        ("FLOWER_BASIC_AUTH", "admin-without-password"),
        ("RATE_LIMIT_PER_MINUTE", "-5"),
        ("USAGE_MAX_PAYLOAD_BYTES", "100"),
        ("TOOL_CHANGE_POLICY", "ignore"),
        ("NEW_TOOL_POLICY", "maybe"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(env, name, value):
    if value is None:
        env.delenv(name)
    else:
        env.setenv(name, value)

    with pytest.raises(ConfigError, match=rf"^{name} "):
        load_settings()


def test_a_call_timeout_above_its_cap_is_refused(env):
    env.setenv("CALL_TIMEOUT_MS_MAX", "100000")
    env.setenv("CALL_TIMEOUT_MS", "100001")

    with pytest.raises(ConfigError, match=r"^CALL_TIMEOUT_MS must be between 1 and 100000"):
        load_settings()


def test_the_admin_token_never_appears_in_the_settings_repr(env):
    assert TOKEN not in repr(load_settings())


def test_env_example_lists_every_variable_config_reads():
    assert set(example_variables()) == variables_config_reads()


def test_env_example_defaults_are_the_codes_defaults(env):
    example = example_variables()
    for name, value in example.items():
        if value and name not in VALID:
            env.setenv(name, value)
    for name in EXAMPLE_OVERRIDES:
        env.delenv(name)
    loaded = load_settings()
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(Settings)
        if f.default is not dataclasses.MISSING
    }

    assert {name: getattr(loaded, name) for name in defaults} == defaults


def config_table() -> str:
    """The README's configuration table, generated from `.env.example`'s `# meaning` lines."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    meaning = ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        if match := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line):
            name, default = match.groups()
            rows.append(f"| `{name}` | {f'`{default}`' if default else '(none)'} | {meaning} |")
        meaning = line[2:] if line.startswith("# ") else ""
    return "\n".join(rows) + "\n"


def test_the_readme_table_is_generated_from_env_example():
    assert config_table() in (ROOT / "README.md").read_text()
