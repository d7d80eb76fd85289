"""Bench scaffolding: a scratch database and Redis prefix, the real API (gunicorn) and workers,
an HTTP client for the API, load generators, and CPU accounting from /proc (Linux only).

Everything runs on this machine's loopback; each scenario cleans up what it started.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg2

from tests.harness import wait_for

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# -- figures ---------------------------------------------------------------------------------
def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(samples_ms), 3),
        "p99": round(percentile(samples_ms, 0.99), 3),
        "n": len(samples_ms),
    }


# -- scratch environment ---------------------------------------------------------------------
def _admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


@contextmanager
def scratch_env(**overrides: str):
    """A fresh database + Redis prefix, migrated; yields the environment for child processes
    and a list of processes to stop at the end. Everything is removed on the way out, whether
    the body returned, raised or was interrupted."""
    run = secrets.token_hex(4)
    db = f"mcpgw_bench_{run}"
    _admin(f'CREATE DATABASE "{db}"')
    env = {
        **os.environ,
        "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + "/" + db,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": f"mcpgw-bench-{run}:",
        "GATEWAY_ADMIN_TOKEN": "bench-" + secrets.token_hex(24),
        "SECRET_KEY": secrets.token_hex(24),
        "STDIO_COMMAND_ALLOWLIST": PY,
        "LOG_LEVEL": "warning",
        "RATE_LIMIT_PER_MINUTE": "0",
        "PERMISSION_DEFAULT": "allow",
        "CACHE_POLICY": "readonly",
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
        try:
            stop_all(procs)
            _cleanup_redis(env)
        finally:
            _admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        stop(proc)


def _cleanup_redis(env: dict) -> None:
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    for name in client.scan_iter(match=env["REDIS_PREFIX"] + "*", count=1000):
        client.delete(name)
    client.close()


@contextmanager
def process_env(env: dict):
    """Run gateway code in this process (usage writer, analytics) against `env`: the settings,
    engine and Redis client caches are cleared on the way in and out."""
    saved = dict(os.environ)
    os.environ.update(env)
    _clear_caches()
    try:
        yield
    finally:
        try:
            from common.db import get_engine

            get_engine().dispose()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            _clear_caches()


def _clear_caches() -> None:
    import common.config
    import common.db
    import common.redis

    for module in (common.config, common.db, common.redis):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


# -- processes -------------------------------------------------------------------------------
def start_api(
    env: dict,
    procs: list,
    port: int,
    workers: int = 1,
    threads: int = 32,
    log: Path | None = None,
) -> str:
    """gunicorn gthread with the repository's gunicorn.conf.py, as the Procfile starts it."""
    cmd = [
        PY, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
        "-k", "gthread", "--threads", str(threads), "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--timeout", "150", "--log-level", "warning",
        "api.app:create_app()",
    ]  # fmt: skip
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get(base + "/health") is not None, 30, "API")
    return base


def start_worker(
    env: dict,
    procs: list,
    servers: str = "*",
    concurrency: int | None = None,
    log: Path | None = None,
) -> subprocess.Popen:
    cmd = [PY, "-m", "workers", "--servers", servers]
    if concurrency:
        cmd += ["--concurrency", str(concurrency)]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
    procs.append(proc)
    return proc


def worker_queues(env: dict, pid: int) -> set[str]:
    """Queues the worker process `pid` says it consumes in its heartbeat."""
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    try:
        for name in client.scan_iter(match=f"{env['REDIS_PREFIX']}worker:gw-{pid}-*"):
            raw = client.get(name)
            if raw:
                return set(json.loads(raw).get("queues") or ())
        return set()
    finally:
        client.close()


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except OSError:
        return None


def post(base: str, path: str, body: dict, token: str) -> dict:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def line_count(path: str | Path) -> int:
    try:
        with open(path) as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


# -- HTTP client -----------------------------------------------------------------------------
class Client:
    """One keep-alive HTTP connection to the API (reopened if the server closed it idle)."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, data, self.headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, (json.loads(raw) if raw else {})
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> dict:
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} failed: {status} {body}")
        return body

    def call(self, tool: str, args: dict, expect: int = 200, **options) -> dict:
        """POST /api/v1/tools/call; `tool` is `slug.name`. A sync call must succeed."""
        status, job = self.request(
            "POST", "/api/v1/tools/call", {"tool": tool, "arguments": args, **options}
        )
        if status != expect or (expect == 200 and job.get("status") != "succeeded"):
            raise RuntimeError(f"call {tool} failed: {status} {job}")
        return job

    def close(self) -> None:
        self.conn.close()


# -- load generators -------------------------------------------------------------------------
def threaded_rps(new_caller, concurrency: int, seconds: float, probe=None) -> tuple[float, int]:
    """(calls/s, calls) with `concurrency` threads, each calling its own `new_caller()`: the
    calls completed within a window of `seconds`. Each thread makes one call before the window
    opens (connection set up); calls still running when it closes are not counted. `probe()`,
    if given, is called when the window opens and when it closes (e.g. to read CPU times)."""
    counts = [0] * concurrency
    errors: list[BaseException] = []
    ready = threading.Barrier(concurrency + 1)
    window = [0.0, 0.0]  # start, end: set by the main thread before the barrier releases

    def run(i: int) -> None:
        try:
            call = new_caller()
            call()
            ready.wait()
            while time.perf_counter() < window[1]:
                call()
                if time.perf_counter() <= window[1]:
                    counts[i] += 1
        except threading.BrokenBarrierError:
            return
        except Exception as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)
            ready.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    while ready.n_waiting < concurrency and not errors and any(t.is_alive() for t in threads):
        time.sleep(0.005)
    if probe:
        probe()
    window[0] = time.perf_counter()
    window[1] = window[0] + seconds
    with suppress(threading.BrokenBarrierError):
        ready.wait()
    if probe:
        time.sleep(max(0.0, window[1] - time.perf_counter()))
        probe()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} caller(s) failed: {errors[0]!r}")
    return _rate(sum(counts), seconds)


def _rate(calls: int, seconds: float) -> tuple[float, int]:
    return calls / seconds, calls


def measured(result: tuple[float, int], what: str) -> tuple[float, int]:
    """A measured window's (calls/s, calls), refused when no call completed within it."""
    if not result[1]:
        raise RuntimeError(f"{what}: no call completed within the window (lengthen it)")
    return result


async def async_rps(call, concurrency: int, seconds: float) -> tuple[float, int]:
    """(calls/s, calls) with `concurrency` coroutines awaiting `call()`: the calls completed
    within a window of `seconds` (calls still running when it closes are not counted)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            if time.perf_counter() <= deadline:
                done += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return _rate(done, seconds)


# -- CPU time from /proc (Linux) -------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (every thread), in seconds; 0 if it is gone."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def is_mcp_server(pid: int) -> bool:
    try:
        return "echo_server.py" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


def process_tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU s of `pid` and its descendants except MCP servers, CPU s of those MCP servers)."""
    own, servers = 0.0, 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        if current != pid and is_mcp_server(current):
            servers += cpu_seconds(current)
            continue
        own += cpu_seconds(current)
        stack.extend(children(current))
    return own, servers


def machine() -> dict:
    import platform
    from datetime import UTC, datetime

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="mcpgw-bench-")
