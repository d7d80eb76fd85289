"""Operations figures: how fast the gateway notices and repairs things on its own.

    .venv/bin/python bench/operations.py [--ping-seconds 5]

Real API (gunicorn), one worker, one beat, an HTTP MCP peer. Measures: server death →
`status: error`; restart → `connected`; a tool added without notification → listed (next
rediscovery) and with tools/list_changed → listed; worker SIGTERM with one 2 s call in flight →
exit (the call completes).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PY, ROOT, post, scratch_env, start_api
from tests.harness import echo_peer


def _get(base: str, path: str, token: str) -> dict:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _until(predicate, timeout: float = 120) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit("timed out")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ping-seconds", type=int, default=5)
    parser.add_argument("--refresh-seconds", type=int, default=10)
    args = parser.parse_args()
    intervals = {
        "HEALTH_PING_INTERVAL_SECONDS": str(args.ping_seconds),
        "TOOL_REFRESH_INTERVAL_SECONDS": str(args.refresh_seconds),
    }
    figures = {}
    with scratch_env(**intervals) as (env, procs), tempfile.TemporaryDirectory() as tmp:
        token = env["GATEWAY_ADMIN_TOKEN"]
        base = start_api(env, procs, 3194)
        worker = subprocess.Popen([PY, "-m", "workers", "--servers", "*"], cwd=ROOT, env=env)
        procs.append(worker)
        beat_cmd = [PY, "-m", "celery", "-A", "workers.celery_app", "beat", "-s", f"{tmp}/s"]
        procs.append(subprocess.Popen(beat_cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL))
        peer = echo_peer("http", env={"PATH": env["PATH"]})
        body = {"name": "ops", "slug": "ops", "transport": "http", "config": {"url": peer.url}}
        server = post(base, "/api/v1/servers", body, token)
        time.sleep(1)
        post(base, f"/api/v1/servers/{server['id']}/connect", {}, token)
        status = lambda: _get(base, f"/api/v1/servers/{server['id']}", token)["status"]  # noqa: E731
        tools = lambda: {t["name"] for t in _get(base, "/api/v1/tools?limit=200", token)["items"]}  # noqa: E731

        call = {"tool": "ops.grow", "arguments": {"name": "quiet", "notify": False}}
        post(base, "/api/v1/tools/call", call, token)
        figures["tool_added_to_listed_by_rediscovery_s"] = _until(lambda: "quiet" in tools())
        call = {"tool": "ops.grow", "arguments": {"name": "loud"}}
        post(base, "/api/v1/tools/call", call, token)
        figures["tool_added_to_listed_by_list_changed_s"] = _until(lambda: "loud" in tools())

        peer.stop()
        figures["server_death_to_status_error_s"] = _until(lambda: status() == "error")
        peer.start()
        figures["server_restart_to_status_connected_s"] = _until(lambda: status() == "connected")

        slow = {"tool": "ops.sleep", "arguments": {"seconds": 2}, "mode": "async"}
        job = post(base, "/api/v1/tools/call", slow, token)
        _until(lambda: _get(base, f"/api/v1/jobs/{job['jobId']}", token)["status"] == "running")
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        worker.wait(60)
        figures["worker_sigterm_to_exit_with_one_2s_call_s"] = time.monotonic() - started
        figures["that_call_status"] = _get(base, f"/api/v1/jobs/{job['jobId']}", token)["status"]
        peer.stop()
    figures = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
    figures["ping_interval_s"] = args.ping_seconds
    figures["refresh_interval_s"] = args.refresh_seconds
    for name, value in figures.items():
        print(f"{name:45} {value}")
    (Path(__file__).parent / "results" / "operations.json").write_text(
        json.dumps(figures, indent=2)
    )


if __name__ == "__main__":
    main()
