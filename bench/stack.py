"""One running gateway for the call scenarios: scratch database and Redis prefix, the API under
gunicorn (as the Procfile runs it: gunicorn.conf.py, gthread, 2 processes x 32 threads), worker
processes, and the test MCP server (tests/peers/echo_server.py) over stdio and streamable HTTP.

Every MCP server it starts counts the `initialize` requests it receives (INIT_COUNT_FILE), so a
scenario can prove warm calls never re-initialize.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from pathlib import Path

from bench.common import (
    Client,
    line_count,
    post,
    process_tree_cpu,
    scratch_env,
    start_api,
    start_worker,
    stop,
    temp_dir,
    worker_queues,
)
from tests.harness import free_port, stdio_echo_config, wait_for

API_PROCESSES = 2
API_THREADS = 32


class Stack:
    """`with Stack() as gw:` a gateway on loopback; everything is stopped and dropped on exit."""

    def __init__(self, api_processes: int = API_PROCESSES, api_threads: int = API_THREADS):
        self.api_processes, self.api_threads = api_processes, api_threads
        self._exit = ExitStack()
        self.peer = None
        self.servers: dict[str, dict] = {}
        self.main_worker: subprocess.Popen | None = None

    def __enter__(self) -> Stack:
        try:
            self.tmp = Path(self._exit.enter_context(temp_dir()))
            self.env, self.procs = self._exit.enter_context(scratch_env())
            self.token = self.env["GATEWAY_ADMIN_TOKEN"]
            self.port = free_port()
            self.base = start_api(
                self.env,
                self.procs,
                self.port,
                workers=self.api_processes,
                threads=self.api_threads,
                log=self.tmp / "api.log",
            )
            self.api = self.procs[-1]
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.peer is not None:
                self.peer.stop()
        finally:
            self._exit.close()

    # -- processes ---------------------------------------------------------------------------
    def start_worker(self, servers: str = "*", concurrency: int | None = None):
        """A `python -m workers` process, once it consumes its queues."""
        proc = start_worker(
            self.env, self.procs, servers, concurrency, log=self.tmp / f"worker-{servers}.log"
        )
        queues = {"mcp.control"} | {
            f"mcp.server.{s}" for s in servers.split(",") if s not in ("*", "")
        }
        wait_for(
            lambda: proc.poll() is not None or queues <= worker_queues(self.env, proc.pid),
            30,
            "worker heartbeat",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}: {self.log_tail('worker')}")
        return proc

    def stop_worker(self, proc) -> None:
        stop(proc, 30)

    def ensure_main_worker(self, concurrency: int) -> None:
        """One `--servers '*'` worker (it picks up every server registered later)."""
        if self.main_worker is None or self.main_worker.poll() is not None:
            self.main_worker = self.start_worker("*", concurrency)

    def stop_main_worker(self) -> None:
        if self.main_worker is not None:
            self.stop_worker(self.main_worker)
            self.main_worker = None

    def http_peer(self):
        """The streamable-HTTP echo server (one process, started on first use)."""
        if self.peer is None:
            from tests.harness import echo_peer

            env = {"INIT_COUNT_FILE": str(self.init_file("peer-http"))}
            self.peer = echo_peer("http", env=env)
        return self.peer

    def log_tail(self, name: str, lines: int = 15) -> str:
        text = ""
        for path in sorted(self.tmp.glob(f"{name}*.log")):
            text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- servers -----------------------------------------------------------------------------
    def init_file(self, name: str) -> Path:
        return self.tmp / f"init-{name}.txt"

    def register(self, slug: str, transport: str, connect: bool = True) -> dict:
        """Register (and connect) the echo server under `slug`: stdio (a child of each worker)
        or HTTP (the shared peer)."""
        if transport == "stdio":
            config = stdio_echo_config({"INIT_COUNT_FILE": str(self.init_file(slug))})
        else:
            config = {"url": self.http_peer().url}
        body = {"name": slug, "slug": slug, "transport": transport, "config": config}
        server = post(self.base, "/api/v1/servers", body, self.token)
        if connect:
            server = self.connect(server["id"])
        self.servers[slug] = server
        return server

    def connect(self, server_id: str) -> dict:
        server = post(self.base, f"/api/v1/servers/{server_id}/connect", {}, self.token)
        if server.get("status") != "connected":
            raise RuntimeError(f"connect failed: {server}")
        return server

    def echo_server(self, transport: str) -> str:
        """The slug of the warm echo server over `transport` (registered on first use)."""
        slug = "echo" if transport == "stdio" else "echo-http"
        if slug not in self.servers:
            self.register(slug, transport)
        return slug

    def initializations(self, slug: str) -> int:
        name = slug if self.servers[slug]["transport"] == "stdio" else "peer-http"
        return line_count(self.init_file(name))

    def client(self, token: str | None = None) -> Client:
        return Client(self.port, token or self.token)

    # -- CPU ---------------------------------------------------------------------------------
    def cpu(self, workers: list) -> dict[str, float]:
        """CPU seconds so far: the API (gunicorn master and its processes), the given worker
        processes (and their children except MCP servers), and the MCP servers they run."""
        api, _ = process_tree_cpu(self.api.pid)
        worker = servers = 0.0
        for proc in workers:
            own, mcp = process_tree_cpu(proc.pid)
            worker, servers = worker + own, servers + mcp
        return {"api": api, "worker": worker, "mcp_server": servers}
