"""scripts/load-env, the environment merge `make run` and `make migrate` share (design §1):
the caller's variables win over `.env`, a fresh clone gets local defaults and generated secrets,
and the admin token is printed only on the run that generated it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DUMP = (
    "import json, os; print(json.dumps({k: os.environ.get(k) for k in ("
    '"DATABASE_URL", "REDIS_URL", "PORT", "STDIO_COMMAND_ALLOWLIST", "GATEWAY_ADMIN_TOKEN", '
    '"SECRET_KEY", "FLOWER_BASIC_AUTH", "LOG_LEVEL")}))'
)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the script in a directory of its own, with no `.env`."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "load-env", tmp_path / "scripts" / "load-env")
    return tmp_path


def load_env(checkout: Path, **env: str) -> tuple[dict[str, str | None], str]:
    """Source the script under `set -euo pipefail` with only `env` set; the merged variables."""
    script = f"set -euo pipefail; . scripts/load-env; python3 -c '{DUMP}'"
    base = {"PATH": os.environ["PATH"], "HOME": str(checkout)}
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=checkout,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout), done.stderr


def test_fresh_clone_gets_local_defaults_and_generated_secrets(checkout):
    merged, stderr = load_env(checkout)

    assert merged["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5432/mcp_gateway"
    assert merged["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert merged["PORT"] == "3100"
    assert "node" in merged["STDIO_COMMAND_ALLOWLIST"].split(",")
    assert len(merged["GATEWAY_ADMIN_TOKEN"]) >= 32
    assert len(merged["SECRET_KEY"]) >= 32
    assert merged["FLOWER_BASIC_AUTH"].startswith("admin:")
    assert merged["GATEWAY_ADMIN_TOKEN"] in stderr
    assert merged["FLOWER_BASIC_AUTH"] in stderr
    assert merged["SECRET_KEY"] not in stderr
    dotenv = (checkout / ".env").read_text()
    assert f"GATEWAY_ADMIN_TOKEN={merged['GATEWAY_ADMIN_TOKEN']}\n" in dotenv
    assert f"SECRET_KEY={merged['SECRET_KEY']}\n" in dotenv
    assert oct((checkout / ".env").stat().st_mode & 0o777) == "0o600"


def test_the_token_is_printed_only_on_the_run_that_generated_it(checkout):
    first, _ = load_env(checkout)
    second, stderr = load_env(checkout)

    assert second["GATEWAY_ADMIN_TOKEN"] == first["GATEWAY_ADMIN_TOKEN"]
    assert second["SECRET_KEY"] == first["SECRET_KEY"]
    assert first["GATEWAY_ADMIN_TOKEN"] not in stderr
    assert stderr == ""


def test_the_callers_variables_win_over_dotenv(checkout):
    (checkout / ".env").write_text(
        "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/from_dotenv\n"
        'LOG_LEVEL="debug"\n'
        "export REDIS_URL=redis://127.0.0.1:6379/5 # a comment\n"
    )
    mine = "postgresql://postgres@127.0.0.1:5432/from_caller"

    merged, _ = load_env(checkout, DATABASE_URL=mine, GATEWAY_ADMIN_TOKEN="c" * 40)

    assert merged["DATABASE_URL"] == mine
    assert merged["GATEWAY_ADMIN_TOKEN"] == "c" * 40
    assert merged["LOG_LEVEL"] == "debug"
    assert merged["REDIS_URL"] == "redis://127.0.0.1:6379/5"
    assert "GATEWAY_ADMIN_TOKEN" not in (checkout / ".env").read_text()


def test_an_empty_secret_in_dotenv_is_filled_in_place(checkout):
    (checkout / ".env").write_text("GATEWAY_ADMIN_TOKEN=\nSECRET_KEY=\nFLOWER_BASIC_AUTH=\n")

    merged, _ = load_env(checkout)

    lines = (checkout / ".env").read_text().splitlines()
    assert lines == [
        f"GATEWAY_ADMIN_TOKEN={merged['GATEWAY_ADMIN_TOKEN']}",
        f"SECRET_KEY={merged['SECRET_KEY']}",
        f"FLOWER_BASIC_AUTH={merged['FLOWER_BASIC_AUTH']}",
    ]
