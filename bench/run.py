"""The gateway's benchmark: `make bench`, or

    .venv/bin/python -m bench.run [--quick] [--only 1,4,...] [--out PATH]

Starts everything it needs (a scratch database and Redis prefix, the API under gunicorn, worker
processes, the test MCP server over stdio and streamable HTTP), runs each scenario after a
warm-up, prints one table and one line per goal (ending in MET or MISS), and writes every figure
to bench/results/latest.json (or --out). Each figure is set against a baseline measured in the
same run, because this machine is noisy. It exits 0 whatever the figures say, and also when a
scenario fails: that scenario's error is printed and its goals are MISS. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import analytics as analytics_bench  # noqa: E402
from bench import async_calls, cache_latency, cold_path, gateway_latency  # noqa: E402
from bench import usage_writer as usage_bench  # noqa: E402
from bench.common import machine, process_env, scratch_env  # noqa: E402
from bench.stack import API_PROCESSES, API_THREADS, Stack  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
MAIN_WORKER_CONCURRENCY = 64  # >= the most concurrent callers, so scenario 2 measures overhead

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "latency_calls": 1000,
        "warmup": 50,
        "rounds": 5,
        "throughput_callers": (16, 64),
        "throughput_seconds": 4.0,
        "throughput_warmup_seconds": 0.5,
        "scaling_callers": 64,
        "scaling_seconds": 6.0,
        "scaling_worker_concurrency": 1,
        "cache_calls": 1000,
        "single_flight_rounds": 3,
        "async_calls": 1000,
        "cold_repeats": 3,
        "usage_records": 50_000,
        "analytics_rows": 1_000_000,
        "analytics_runs": {"24h": 20, "30d": 5},  # calls per groupBy and window
    },
    "quick": {
        "latency_calls": 40,
        "warmup": 5,
        "rounds": 2,
        "throughput_callers": (16, 64),
        "throughput_seconds": 0.6,
        "throughput_warmup_seconds": 0.0,
        "scaling_callers": 16,
        "scaling_seconds": 0.6,
        "scaling_worker_concurrency": 1,
        "cache_calls": 40,
        "single_flight_rounds": 0,
        "async_calls": 30,
        "cold_repeats": 1,
        "usage_records": 2000,
        "analytics_rows": 20_000,
        "analytics_runs": {"24h": 3, "30d": 3},
    },
}

TITLES = {
    1: "warm sync call: gateway vs direct SDK session",
    2: "throughput, one worker process: gateway vs direct",
    3: "scaling: two worker processes on one queue vs one",
    4: "cache hit vs uncached call",
    5: "async accept (202) and job poll",
    6: "usage writer into Postgres",
    7: "analytics on the usage table",
    8: "cold path: register + connect + discover",
    9: "MCP initialize requests during scenario 1",
}
GATEWAY_SCENARIOS = (1, 9, 2, 4, 5, 8, 3)  # in this order: 3 stops the '*' worker; 9 is 1's
DATA_SCENARIOS = (7, 6)  # 6 writes into the table 7 loaded


# -- goals -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Goal:
    id: str  # scenario number + letter
    label: str
    value: Callable[[dict], float]
    op: str
    threshold: float | Callable[[dict], float]
    unit: str = ""

    @property
    def scenario(self) -> int:
        return int(self.id[:-1])

    def check(self, result: dict) -> dict:
        """The goal against one scenario's result (`figures`, or an `error`)."""
        out = {"id": self.id, "label": self.label, "op": self.op, "unit": self.unit}
        try:
            value = self.value(result["figures"])
            threshold = self.threshold
            if callable(threshold):
                threshold = threshold(result["figures"])
        except Exception as exc:  # noqa: BLE001 - a failed scenario has no figures
            why = result.get("error") or f"{type(exc).__name__}: {exc}"
            return {
                **out,
                "value": None,
                "threshold": None if callable(self.threshold) else self.threshold,
                "met": False,
                "why": f"not measured ({why.split(':')[0]})",
            }
        met = {"<=": value <= threshold, ">=": value >= threshold, "==": value == threshold}
        return {**out, "value": value, "threshold": threshold, "met": bool(met[self.op])}


def _at(*path: str) -> Callable[[dict], Any]:
    def get(figures: dict) -> Any:
        for part in path:
            figures = figures[part]
        return figures

    return get


def _cache_speedup(f: dict) -> float:
    return min(f["hit_speedup_vs_bypass"], f["hit_speedup_vs_miss"])


GOALS = [
    Goal("1a", "stdio: added p50", _at("stdio", "added_p50_ms"), "<=", 3, "ms"),
    Goal("1b", "stdio: added p99", _at("stdio", "added_p99_ms"), "<=", 10, "ms"),
    Goal("1c", "http: added p50", _at("http", "added_p50_ms"), "<=", 3, "ms"),
    Goal("1d", "http: added p99", _at("http", "added_p99_ms"), "<=", 10, "ms"),
    Goal(
        "2a", "echo, 16 callers: gateway/direct calls/s", _at("echo@16", "ratio"), ">=", 0.35, "x"
    ),
    Goal(
        "2b", "echo, 64 callers: gateway/direct calls/s", _at("echo@64", "ratio"), ">=", 0.35, "x"
    ),
    Goal(
        "2c",
        "pause 50 ms, 16 callers: gateway/direct calls/s",
        _at("pause50@16", "ratio"),
        ">=",
        0.9,
        "x",
    ),
    Goal(
        "2d",
        "pause 50 ms, 64 callers: gateway/direct calls/s",
        _at("pause50@64", "ratio"),
        ">=",
        0.9,
        "x",
    ),
    Goal("3a", "saturated calls/s, two workers / one", _at("ratio"), ">=", 1.8, "x"),
    Goal("4a", "cache hit p50", _at("hit", "p50"), "<=", 1.5, "ms"),
    Goal("4b", "cache hit vs uncached p50 (worse of miss, bypass)", _cache_speedup, ">=", 3, "x"),
    Goal("5a", "async accept (202) p99", _at("accept", "p99"), "<=", 5, "ms"),
    Goal("6a", "usage writer", _at("writer_rps"), ">=", 5000, "records/s"),
    *(
        Goal(
            f"7{letter}",
            f"analytics groupBy={g}, window of every row (30 d): p95",
            _at("windows", "30d", g, "p95"),
            "<=",
            300,
            "ms",
        )
        for letter, g in zip("abcdef", analytics_bench.GROUPINGS, strict=True)
    ),
    Goal(
        "8a",
        "stdio cold connect: tools discovered, as many as direct",
        _at("stdio", "tools_gateway"),
        "==",
        _at("stdio", "tools_direct"),
    ),
    Goal(
        "8b",
        "http cold connect: tools discovered, as many as direct",
        _at("http", "tools_gateway"),
        "==",
        _at("http", "tools_direct"),
    ),
    Goal("9a", "stdio: initialize requests after warm-up", _at("stdio"), "==", 0),
    Goal("9b", "http: initialize requests after warm-up", _at("http"), "==", 0),
]


# -- the table -------------------------------------------------------------------------------
def _n(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _diff(metric: str, base: float, value: float, goal: str = "") -> tuple:
    return (metric, base, value, f"{value - base:+.2f} ms", goal)


def _ratio(metric: str, base: float, value: float, goal: str = "") -> tuple:
    return (metric, base, value, f"{value / base:.2f}x" if base else "-", goal)


def rows(sid: int, f: dict) -> list[tuple]:
    """(metric (baseline), baseline, gateway, vs baseline, goal) rows of a scenario's figures."""
    out: list[tuple] = []
    if sid == 1:
        for t in (t for t in ("stdio", "http") if t in f):
            d, g = f[t]["direct"], f[t]["gateway"]
            out.append(_diff(f"{t} echo p50 ms (direct SDK)", d["p50"], g["p50"], "<= +3 ms"))
            out.append(_diff(f"{t} echo p99 ms (direct SDK)", d["p99"], g["p99"], "<= +10 ms"))
    elif sid == 2:
        for key, r in f.items():
            goal = ">= 0.35x" if r["tool"] == "echo" else ">= 0.9x"
            metric = f"{r['tool']} calls/s, {r['callers']} callers (direct)"
            out.append(_ratio(metric, r["direct"]["rps"], r["gateway"]["rps"], goal))
            cpu = r["gateway"]["cpu_ms_per_call"]
            metric = f"{key} CPU ms/call, API+worker (MCP server)"
            out.append(_ratio(metric, cpu["mcp_server"], cpu["gateway"]))
    elif sid == 3:
        metric = (
            f"pause {f['tool_ms']} ms calls/s, {f['callers']} callers, "
            f"concurrency {f['worker_concurrency']}: 2 workers (1)"
        )
        out.append(_ratio(metric, f["one_worker"]["rps"], f["two_workers"]["rps"], ">= 1.8x"))
    elif sid == 4:
        hit = f["hit"]["p50"]
        for path in ("bypass", "miss"):
            base = f[path]["p50"]
            speedup = f"{base / hit:.1f}x faster"
            out.append((f"echo p50 ms: hit ({path})", base, hit, speedup, ">= 3x, <= 1.5 ms"))
        out.append(_diff("echo p50 ms: hit, agent key (admin)", hit, f["hit_api_key"]["p50"]))
        out.append(_diff("echo p50 ms: hit (GET job floor)", f["floor"]["p50"], hit))
        if "single_flight_16_reached_server" in f:
            reached = max(f["single_flight_16_reached_server"])
            out.append(("16 identical calls: executions (ideal)", 1, reached, "", ""))
    elif sid == 5:
        a, s = f["accept"], f["sync_call"]
        out.append(_diff("accept 202 p50 ms (sync call)", s["p50"], a["p50"]))
        out.append(_diff("accept 202 p99 ms (sync call)", s["p99"], a["p99"], "<= 5 ms"))
        raw = f["redis_get_job"]["p50"]
        out.append(_diff("job poll p50 ms (Redis HGETALL)", raw, f["poll"]["p50"]))
    elif sid == 6:
        metric = "records/s (Postgres bulk insert)"
        out.append(_ratio(metric, f["postgres_insert_rps"], f["writer_rps"], ">= 5,000/s"))
        out.append(("record_usage XADD/s, one thread", "", f["record_usage_rps"], "", ""))
    elif sid == 7:
        for window, groups in f["windows"].items():
            base = groups["baseline_count"]["p95"]
            goal = "<= 300 ms"
            for g in analytics_bench.GROUPINGS:
                metric = f"{window}: groupBy={g} p95 ms (count(*))"
                out.append(_ratio(metric, base, groups[g]["p95"], goal))
        loaded = f["load"]
        out.append(("usage rows loaded", "", loaded["rows"], f"{loaded['load_s']} s", ""))
    elif sid == 8:
        for t in (t for t in ("stdio", "http") if t in f):
            d, g = f[t]["direct"]["p50"], f[t]["gateway_total"]["p50"]
            out.append(_diff(f"{t} register+connect+discover p50 ms (SDK)", d, g))
    elif sid == 9:
        for t, count in f.items():
            out.append((f"{t}: initialize after warm-up", 0, count, "", "= 0"))
    return out


def render_table(results: dict[int, dict]) -> tuple[str, list[dict]]:
    header = ("#", "metric (baseline)", "baseline", "gateway", "vs baseline", "goal")
    table: list[tuple] = []
    for sid in sorted(results):
        r = results[sid]
        if "error" in r:
            table.append((str(sid), f"FAILED: {r['error']}"[:60], "", "", "", ""))
            continue
        for row in rows(sid, r["figures"]):
            table.append((str(sid), row[0], _n(row[1]), _n(row[2]), row[3], row[4]))
    widths = [max(len(str(row[i])) for row in (header, *table)) for i in range(len(header))]
    lines = []
    for k, row in enumerate((header, *table)):
        cells = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    as_json = [dict(zip(header, row, strict=True)) for row in table]
    return "\n".join(lines), as_json


def goal_line(g: dict) -> str:
    unit = f" {g['unit']}" if g["unit"] not in ("", "x") else g["unit"]
    verdict = "MET" if g["met"] else "MISS"
    if g["value"] is None:
        threshold = "" if g["threshold"] is None else f" {g['op']} {_n(g['threshold'])}{unit}"
        return f"goal {g['id']}: {g['label']}{threshold}: {g.get('why', 'not measured')} {verdict}"
    return (
        f"goal {g['id']}: {g['label']} {_n(g['value'])}{unit} {g['op']} "
        f"{_n(g['threshold'])}{unit} {verdict}"
    )


# -- running ---------------------------------------------------------------------------------
_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench {time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def _run(sid: int, results: dict, fn: Callable[[], dict]) -> dict | None:
    log(f"scenario {sid}: {TITLES[sid]}")
    started = time.perf_counter()
    try:
        figures = fn()
    except Exception as exc:  # noqa: BLE001 - report it, go on with the next scenario
        traceback.print_exc()
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # anyio task groups wrap the error that matters
        results[sid] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        figures = None
    else:
        results[sid] = {"figures": figures}
    results[sid]["seconds"] = round(time.perf_counter() - started, 1)
    return figures


def run_gateway(selected: set[int], size: dict, results: dict) -> None:
    steps = [s for s in GATEWAY_SCENARIOS if s in selected and s != 9]
    if 9 in selected and 1 not in selected:
        steps.insert(0, 1)  # scenario 9 counts during scenario 1
    try:
        log("starting the gateway (database, API, worker, MCP servers)")
        with Stack() as gw:
            if set(steps) - {3}:
                gw.ensure_main_worker(MAIN_WORKER_CONCURRENCY)
            for sid in steps:
                _gateway_scenario(sid, gw, size, results)
                if results[sid].get("error"):
                    print(gw.log_tail("worker"), file=sys.stderr)
            log("stopping the gateway")
    except Exception as exc:  # noqa: BLE001 - the stack failed: scenarios not run yet fail
        traceback.print_exc()
        for sid in steps:
            results.setdefault(sid, {"error": f"gateway: {type(exc).__name__}: {exc}"[:300]})
    finally:  # also when interrupted: scenario 9 is scenario 1's count
        if 9 in selected and 1 in results:
            latency = results[1]
            if "figures" in latency:
                # A counter that saw no initialize at all (not even the session's first) proves
                # nothing: None, so the goal reads MISS.
                counts = {
                    t: v["initialize_during_window"] if v["initialize_before_window"] else None
                    for t, v in latency["figures"].items()
                }
                results[9] = {"figures": counts, "seconds": 0}
            else:
                results[9] = {"error": f"scenario 1 failed: {latency.get('error')}"}
        if 1 not in selected:
            results.pop(1, None)


# Scenarios run against the shared gateway: each takes the Stack and the sizes.
GATEWAY_RUNNERS: dict[int, Callable[[Stack, dict], dict]] = {
    1: lambda gw, s: gateway_latency.latency(gw, s["latency_calls"], s["warmup"], s["rounds"]),
    2: lambda gw, s: gateway_latency.throughput(
        gw, s["throughput_callers"], s["throughput_seconds"], s["throughput_warmup_seconds"]
    ),
    3: lambda gw, s: gateway_latency.scaling(
        gw,
        s["scaling_callers"],
        s["scaling_seconds"],
        s["throughput_warmup_seconds"],
        s["scaling_worker_concurrency"],
    ),
    4: lambda gw, s: cache_latency.cache(
        gw, s["cache_calls"], s["warmup"], s["rounds"], s["single_flight_rounds"]
    ),
    5: lambda gw, s: async_calls.async_calls(gw, s["async_calls"], s["warmup"], s["rounds"]),
    8: lambda gw, s: cold_path.cold_path(gw, s["cold_repeats"]),
}


def _gateway_scenario(sid: int, gw: Stack, size: dict, results: dict) -> None:
    _run(sid, results, lambda: GATEWAY_RUNNERS[sid](gw, size))


def run_data(selected: set[int], size: dict, results: dict) -> None:
    wanted = [s for s in DATA_SCENARIOS if s in selected]
    try:
        log("scratch database for the usage table")
        with scratch_env() as (env, _procs), process_env(env):
            for sid in wanted:
                if sid == 7:
                    _run(
                        7,
                        results,
                        lambda: analytics_bench.analytics(
                            size["analytics_rows"],
                            size["analytics_runs"],
                        ),
                    )
                else:
                    _run(6, results, lambda: usage_bench.usage_writer(size["usage_records"]))
    except Exception as exc:  # noqa: BLE001 - the setup failed: its scenarios fail
        traceback.print_exc()
        for sid in wanted:
            results.setdefault(sid, {"error": f"setup: {type(exc).__name__}: {exc}"[:300]})


def _parse_only(text: str | None) -> set[int]:
    if not text:
        return set(TITLES)
    chosen = {int(part) for part in text.replace(" ", "").split(",") if part}
    unknown = chosen - set(TITLES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenarios {sorted(unknown)}")
    return chosen


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # unwinds through every cleanup (processes, database, Redis keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts (the smoke test)")
    parser.add_argument("--only", type=_parse_only, default=None, help="e.g. 1,4,9")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    args = parser.parse_args(argv)
    selected = args.only or set(TITLES)
    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    signal.signal(signal.SIGTERM, _terminate)

    info = machine()
    results: dict[int, dict] = {}
    started = time.perf_counter()
    interrupted = False
    try:
        if selected & set(GATEWAY_SCENARIOS):
            run_gateway(selected, size, results)
        if selected & set(DATA_SCENARIOS):
            run_data(selected, size, results)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting what was measured")
    for sid in selected:
        results.setdefault(sid, {"error": "interrupted: not run"})

    log("done")
    table, table_json = render_table(results)
    goals = [g.check(results[g.scenario]) for g in GOALS if g.scenario in selected]
    print()
    print(
        f"MCP gateway bench ({mode}; {info['cpus']} CPUs, Python {info['python']}, "
        f"{info['date']}); API: gunicorn {API_PROCESSES}x{API_THREADS} threads"
    )
    print(table)
    print()
    for goal in goals:
        print(goal_line(goal))
    report = {
        "machine": {**info, "elapsed_s": round(time.perf_counter() - started, 1)},
        "mode": mode,
        "sizes": size,
        "setup": {
            "api": f"gunicorn gthread, {API_PROCESSES} processes x {API_THREADS} threads",
            "main_worker_concurrency": MAIN_WORKER_CONCURRENCY,
            "scaling_worker_concurrency": size["scaling_worker_concurrency"],
        },
        "scenarios": {str(sid): {"title": TITLES[sid], **results[sid]} for sid in sorted(results)},
        "table": table_json,
        "goals": goals,
        "interrupted": interrupted,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
