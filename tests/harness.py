"""Real processes for end-to-end tests: gateway workers and MCP servers on this machine.

Nothing here fakes a dependency: workers are `python -m workers` subprocesses on the test
database and Redis prefix; peers are real MCP servers (our SDK-built one, and the npm
`server-everything`) over stdio, SSE and streamable HTTP on loopback ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ECHO_SERVER = str(ROOT / "tests" / "peers" / "echo_server.py")
EVERYTHING = str(ROOT / "node_modules/@modelcontextprotocol/server-everything/dist/index.js")


def wait_for(predicate: Callable[[], Any], timeout: float, message: str, every: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s: {message}")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Worker:
    """A `python -m workers` subprocess; its log is kept for failing tests."""

    def __init__(self, servers: str = "*", concurrency: int = 16, env: dict | None = None):
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            "w+", prefix="worker-", suffix=".log", delete=False
        )
        cmd = [
            sys.executable,
            "-m",
            "workers",
            "--servers",
            servers,
            "--concurrency",
            str(concurrency),
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def heartbeat(self) -> dict | None:
        from common.heartbeats import live_workers

        mine = f"gw-{self.proc.pid}-"
        return next((w for w in live_workers() if w["nodename"].startswith(mine)), None)

    @property
    def nodename(self) -> str:
        return wait_for(lambda: self.heartbeat, 20, "worker heartbeat")["nodename"]

    def wait_consuming(self, queue: str, timeout: float = 20) -> None:
        wait_for(lambda: queue in ((self.heartbeat or {}).get("queues") or ()), timeout, queue)

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def discard_log(self) -> None:
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


class Peer:
    """An MCP server listening on a loopback port (streamable HTTP or SSE)."""

    def __init__(self, cmd: list[str], port: int, env: dict | None = None, path: str = "/mcp"):
        self.port, self.path = port, path
        self.cmd, self.env = cmd, {**os.environ, **(env or {})}
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, 20, f"peer on port {self.port}")

    def _answers(self) -> bool:
        """Serving HTTP (not only listening): any answer below 500 will do."""
        if not port_open(self.port):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2):
                return True
        except urllib.error.HTTPError as error:
            return error.code < 500
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def echo_peer(transport: str, env: dict | None = None) -> Peer:
    port = free_port()
    path = "/mcp" if transport == "http" else "/sse"
    return Peer([sys.executable, ECHO_SERVER, transport, str(port)], port, env, path)


def everything_peer(transport: str) -> Peer:
    port = free_port()
    mode, path = {"http": ("streamableHttp", "/mcp"), "sse": ("sse", "/sse")}[transport]
    return Peer(["node", EVERYTHING, mode], port, {"PORT": str(port)}, path)


def stdio_echo_config(env: dict | None = None) -> dict[str, Any]:
    return {"command": sys.executable, "args": [ECHO_SERVER, "stdio"], "env": env or {}}


class Gateway:
    """The API through Flask's test client, as an admin, with small helpers."""

    def __init__(self, client, headers: dict[str, str]):
        self.client, self.headers = client, headers

    def register(self, slug: str, transport: str, config: dict, connect: bool = True) -> dict:
        body = {"name": slug, "slug": slug, "transport": transport, "config": config}
        response = self.client.post("/api/v1/servers", json=body, headers=self.headers)
        assert response.status_code == 201, response.json
        server = response.json
        if connect:
            server = self.connect(server["id"])
        return server

    def connect(self, server_id: str) -> dict:
        response = self.client.post(f"/api/v1/servers/{server_id}/connect", headers=self.headers)
        assert response.status_code == 200, response.json
        return response.json

    def call(self, tool: str, arguments: dict | None = None, headers=None, **options):
        body = {"tool": tool, "arguments": arguments or {}, **options}
        return self.client.post("/api/v1/tools/call", json=body, headers=headers or self.headers)

    def job(self, job_id: str, headers=None):
        return self.client.get(f"/api/v1/jobs/{job_id}", headers=headers or self.headers)


class Beat:
    """`celery -A workers.celery_app beat` with its schedule file in a temporary folder."""

    def __init__(self, schedule_dir: str, env: dict | None = None):
        cmd = [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
            "--schedule", str(Path(schedule_dir) / "beat-schedule"), "--loglevel", "WARNING",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
