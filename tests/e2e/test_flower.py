"""Flower (`celery -A workers.celery_app flower`): behind basic auth, tasks listed by name with
job ids as their arguments, and no secret of a registered server nor any call payload on any page
or API answer it serves."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.config import get_settings
from tests.harness import ROOT, echo_peer, free_port, port_open, stdio_echo_config, wait_for


@dataclass
class Answer:
    url: str
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Flower:
    base: str
    auth: tuple[str, str]

    def get(self, path: str, auth: tuple[str, str] | None = None) -> Answer:
        return fetch(self.base + path, auth or self.auth)


def fetch(url: str, auth: tuple[str, str] | None) -> Answer:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return Answer(url, response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Answer(url, exc.code, exc.read().decode(errors="replace"))


@pytest.fixture(scope="module")
def flower(worker) -> Iterator[Flower]:
    port = free_port()
    auth = ("ops-" + secrets.token_hex(4), secrets.token_urlsafe(16))
    log = tempfile.NamedTemporaryFile("w+", prefix="flower-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower"]
    cmd += [f"--port={port}", "--address=127.0.0.1", f"--basic-auth={auth[0]}:{auth[1]}"]
    cmd += ["--enable-events=false"]  # as in the Procfile: CELERY_TASK_EVENTS decides
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 30, "flower listening")
        assert proc.poll() is None, Path(log.name).read_text()
        yield Flower(f"http://127.0.0.1:{port}", auth)
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
        Path(log.name).unlink(missing_ok=True)


PAGES = ("/", "/workers", "/tasks", "/api/workers", "/api/tasks")


@pytest.mark.parametrize("path", PAGES)
def test_flower_answers_401_without_its_credentials_and_200_with_them(flower, path):
    anonymous = fetch(flower.base + path, None)
    wrong = flower.get(path, auth=(flower.auth[0], "not-the-password"))

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert flower.get(path).status_code == 200


@pytest.mark.skipif(
    not get_settings().celery_task_events, reason="CELERY_TASK_EVENTS=false: Flower lists no tasks"
)
def test_flower_lists_calls_by_name_and_job_id_but_shows_no_secret_or_payload(
    flower, worker, gateway, slug
):
    env_secret, header_secret = "env-" + secrets.token_hex(12), "hdr-" + secrets.token_hex(12)
    payload = "payload-" + secrets.token_hex(12)
    peer = echo_peer("http")
    try:
        gateway.register(slug, "stdio", stdio_echo_config({"PEER_API_TOKEN": env_secret}))
        http_config = {"url": peer.url, "headers": {"Authorization": f"Bearer {header_secret}"}}
        gateway.register(slug + "-http", "http", http_config)
        task_id, task = wait_for(
            lambda: _call_seen(flower, gateway, f"{slug}.echo", payload), 30, "call in Flower"
        )
        assert _call_seen(flower, gateway, f"{slug}-http.echo", payload)
    finally:
        peer.stop()

    assert task["name"] == "mcp.call_tool" and task["result"] == "None"
    pages = [*PAGES, f"/worker/{worker.nodename}", f"/task/{task_id}", f"/api/task/info/{task_id}"]
    answers = [flower.get(path) for path in (*pages, "/api/workers?refresh=1", _DATATABLE)]
    assert [a.status_code for a in answers] == [200] * len(answers), [a.url for a in answers]
    answers += [flower.get(path) for path in ("/broker", "/api/queues/length", "/metrics")]
    assert [a.status_code for a in answers[-3:-1]] == [200, 200], answers[-3].text[:300]
    for answer in answers:
        for secret in (env_secret, header_secret, payload):
            assert secret not in answer.text, f"{secret!r} in {answer.url}"


def _call_seen(flower: Flower, gateway, tool: str, payload: str) -> tuple[str, dict] | None:
    """Call `tool` (uncached); Flower's (task id, task) for that call's job once it finished,
    or None if Flower never saw it (its event receiver may not have been subscribed yet)."""
    response = gateway.call(tool, {"text": payload}, cache="bypass")
    assert response.status_code == 200 and response.json["status"] == "succeeded", response.json
    job_id = response.json["jobId"]

    def seen() -> tuple[str, dict] | None:
        tasks = flower.get("/api/tasks").json().items()
        mine = [(tid, t) for tid, t in tasks if job_id in (t.get("args") or "")]
        return next(((tid, t) for tid, t in mine if t.get("state") == "SUCCESS"), None)

    try:
        return wait_for(seen, 5, f"job {job_id} in Flower")
    except AssertionError:
        return None


_DATATABLE = (
    "/tasks/datatable?draw=1&start=0&length=100&search[value]=&order[0][column]=0"
    "&order[0][dir]=desc&columns[0][data]=name"
)
