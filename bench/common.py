"""Bench scaffolding: a scratch database and Redis prefix, the real API (gunicorn) and workers.

Everything runs on this machine's loopback; each scenario cleans up what it started.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ECHO_SERVER = str(ROOT / "tests" / "peers" / "echo_server.py")
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(samples_ms), 3),
        "p99": round(percentile(samples_ms, 0.99), 3),
        "n": len(samples_ms),
    }


def _admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


@contextmanager
def scratch_env(**overrides: str):
    """A fresh database + Redis prefix, migrated; yields the environment for child processes."""
    run = secrets.token_hex(4)
    db = f"mcpgw_bench_{run}"
    _admin(f'CREATE DATABASE "{db}"')
    env = {
        **os.environ,
        "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + "/" + db,
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_PREFIX": f"mcpgw-bench-{run}:",
        "GATEWAY_ADMIN_TOKEN": "bench-" + secrets.token_hex(24),
        "SECRET_KEY": secrets.token_hex(24),
        "STDIO_COMMAND_ALLOWLIST": PY,
        "LOG_LEVEL": "warning",
        "RATE_LIMIT_PER_MINUTE": "0",
        "ALLOW_PRIVATE_URLS": "true",  # peers listen on loopback
        **overrides,
    }
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run(
            [PY, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        yield env, procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        _cleanup_redis(env)
        _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _cleanup_redis(env: dict) -> None:
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    for name in client.scan_iter(match=env["REDIS_PREFIX"] + "*", count=1000):
        client.delete(name)


def start_api(env: dict, procs: list, port: int, workers: int = 1) -> str:
    cmd = [
        PY,
        "-m",
        "gunicorn",
        "-k",
        "gthread",
        "--threads",
        "32",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "150",
        "--log-level",
        "warning",
        "api.app:create_app()",
    ]
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
    base = f"http://127.0.0.1:{port}"
    _wait(lambda: _get(base + "/health") is not None, 30, "API")
    return base


def start_worker(env: dict, procs: list, servers: str = "*") -> None:
    cmd = [PY, "-m", "workers", "--servers", servers]
    procs.append(
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    )


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except OSError:
        return None


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not come up within {timeout}s")


def post(base: str, path: str, body: dict, token: str) -> dict:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def register_echo(base: str, token: str, slug: str) -> None:
    config = {"command": PY, "args": [ECHO_SERVER, "stdio"], "env": {}}
    body = {"name": slug, "slug": slug, "transport": "stdio", "config": config}
    server = post(base, "/api/v1/servers", body, token)
    _wait(lambda: _connect(base, token, server["id"]), 30, "server connect")


def _connect(base: str, token: str, server_id: str) -> bool:
    try:
        return (
            post(base, f"/api/v1/servers/{server_id}/connect", {}, token)["status"] == "connected"
        )
    except OSError:
        return False
