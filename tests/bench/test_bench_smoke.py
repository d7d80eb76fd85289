"""The benchmark runs (`python -m bench.run --quick`: tiny counts, every scenario) and its figures
are sane. Never a time threshold: this checks the harness, not the gateway's speed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = set(range(1, 10))


def _run_quick(out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=pipe, stderr=pipe, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the bench cleans up (processes, database, Redis keys)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"bench --quick did not finish in 240 s\n{stdout}\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _summary_ok(s: dict, what: str) -> None:
    assert s["n"] > 0, what
    assert 0 < s["p50"] <= s["p99"], (what, s)


@pytest.mark.timeout(330)
def test_quick_bench_runs_every_scenario_with_sane_figures(tmp_path):
    out = tmp_path / "latest.json"
    done = _run_quick(out)
    assert done.returncode == 0, done.stderr[-3000:]

    goal_lines = [line for line in done.stdout.splitlines() if line.startswith("goal ")]
    assert goal_lines, done.stdout
    for line in goal_lines:
        assert re.fullmatch(r"goal \d[a-z]: .+ (MET|MISS)", line), line
    assert {int(line[5]) for line in goal_lines} == SCENARIOS
    assert "metric" in done.stdout  # the table's header

    report = json.loads(out.read_text())
    assert report["machine"]["cpus"] > 0 and report["machine"]["python"]
    scenarios = report["scenarios"]
    assert set(scenarios) == {str(s) for s in SCENARIOS}
    failed = {sid: s["error"] for sid, s in scenarios.items() if "error" in s}
    assert not failed, (failed, done.stderr[-3000:])
    assert len(report["goals"]) == len(goal_lines)
    assert all(isinstance(goal["met"], bool) for goal in report["goals"])
    f = {int(sid): s["figures"] for sid, s in scenarios.items()}

    for transport in ("stdio", "http"):  # 1: warm latency, direct vs gateway
        for path in ("direct", "gateway"):
            _summary_ok(f[1][transport][path], f"1 {transport} {path}")
        assert f[1][transport]["initialize_before_window"] >= 1  # the counter counts
    for name, r in f[2].items():  # 2: throughput and CPU per call
        assert r["direct"]["rps"] > 0 and r["direct"]["calls"] > 0, name
        assert r["gateway"]["rps"] > 0 and r["gateway"]["calls"] > 0, name
        assert r["ratio"] > 0, name
        assert r["gateway"]["cpu_ms_per_call"]["gateway"] > 0, name
    assert set(f[2]) == {"echo@16", "echo@64", "pause50@16", "pause50@64"}
    assert f[3]["one_worker"]["rps"] > 0 and f[3]["two_workers"]["rps"] > 0  # 3: scaling
    assert f[3]["ratio"] > 0
    for path in ("hit", "miss", "bypass", "floor", "hit_api_key"):  # 4: cache
        _summary_ok(f[4][path], f"4 {path}")
    assert f[4]["hit_speedup_vs_bypass"] > 0
    for path in ("accept", "poll", "sync_call", "redis_get_job"):  # 5: async
        _summary_ok(f[5][path], f"5 {path}")
    assert f[5]["accepted"] > 0
    assert f[6]["writer_rps"] > 0 and f[6]["postgres_insert_rps"] > 0  # 6: usage writer
    assert f[6]["rows_checked"] == f[6]["records"] > 0
    assert f[7]["load"]["rows"] > 0  # 7: analytics
    for group_by, r in f[7]["windows"]["24h"].items():
        assert 0 < r["p50"] <= r["p95"], (group_by, r)
    for transport in ("stdio", "http"):  # 8: cold path
        assert f[8][transport]["gateway_total"]["p50"] > 0
        assert f[8][transport]["direct"]["p50"] > 0
        assert f[8][transport]["tools_gateway"] > 0
    for transport in ("stdio", "http"):  # 9: initialize count during scenario 1
        assert isinstance(f[9][transport], int) and f[9][transport] >= 0
