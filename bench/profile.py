"""Where a warm call's time goes: py-spy on the API and the worker during sequential calls.

    .venv/bin/python -m bench.profile [--seconds 6] [--rate 500] [--top 25]

Starts the bench gateway (bench.stack: API under gunicorn, one `--servers '*'` worker, the stdio
echo server), makes sequential `echo` calls with `cache: bypass` and, meanwhile, samples the API
process that serves them and the worker with `py-spy record --gil` (only the thread holding the
GIL is sampled, so a frame's share is its share of that process's Python CPU). Prints, per
process, the share of samples per thread and the heaviest frames (inclusive), and writes both
raw profiles to bench/results/profile-{api,worker}.txt (py-spy's folded stacks: one stack per line
and its sample count; load them into speedscope or a flamegraph tool for the whole picture).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import children  # noqa: E402
from bench.stack import Stack  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PY_SPY = Path(sys.executable).with_name("py-spy")
_LINE = re.compile(r":\d+\)")  # py-spy frames end in "(file.py:123)": group by function
# Frames every sample of a thread passes through (thread start, CLI, the serving loop's shell).
_PLUMBING = re.compile(
    r"threading\.py|concurrent/futures|click/|runpy|celery/bin/|celery/bootsteps|"
    r"celery/app/base\.py\)$|workers/__main__|gunicorn/|Consumer\.start|Evloop\.start|"
    r"WorkController\.start|asynloop"
)


def _record(pid: int, seconds: float, rate: int, out: Path) -> subprocess.Popen:
    cmd = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    cmd += ["--rate", str(rate), "--format", "raw", "--output", str(out), "--threads", "--gil"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(folded: Path, top: int) -> str:
    """Threads by share of samples, then the frames present in the most samples."""
    threads, frames, total = Counter(), Counter(), 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n, parts = int(count), stack.split(";")
        total += n
        threads[re.sub(r" \(\d+\)", "", parts[0])] += n
        for frame in {_LINE.sub(")", p) for p in parts[1:]}:
            if not _PLUMBING.search(frame):
                frames[frame] += n
    if not total:
        return "  no samples\n"
    out = [f"  {total} samples"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    out.append("  heaviest frames (inclusive):")
    out += [f"  {n / total:6.1%}  {name[:110]}" for name, n in frames.most_common(top)]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if not PY_SPY.exists():
        raise SystemExit(f"py-spy is not installed next to {sys.executable} (pip install py-spy)")

    with Stack(api_processes=1) as gw:
        gw.ensure_main_worker(16)
        client, tool = gw.client(), gw.echo_server("stdio") + ".echo"
        for _ in range(200):
            client.call(tool, {"text": "warm"}, cache="bypass")
        api = children(gw.api.pid)[0]  # the one gunicorn process serving every call
        outputs = {"api": RESULTS / "profile-api.txt", "worker": RESULTS / "profile-worker.txt"}
        pids = {"api": api, "worker": gw.main_worker.pid}
        spies = [_record(pids[n], args.seconds, args.rate, outputs[n]) for n in outputs]
        calls, stop = 0, threading.Event()
        threading.Timer(args.seconds, stop.set).start()
        started = time.perf_counter()
        while not stop.is_set():
            client.call(tool, {"text": "hello"}, cache="bypass")
            calls += 1
        elapsed = time.perf_counter() - started
        for spy in spies:
            spy.wait()
    print(f"{calls} sequential calls in {elapsed:.1f} s ({elapsed / calls * 1000:.2f} ms each)")
    for name, path in outputs.items():
        print(f"\n{name} (pid {pids[name]}), {path.relative_to(ROOT)}:")
        print(summarize(path, args.top), end="")


if __name__ == "__main__":
    main()
