"""bench/profile.py's summary of py-spy's folded stacks (a pure function)."""

from __future__ import annotations

from bench.profile import summarize


def test_threads_and_frames_are_shared_by_samples_without_the_plumbing(tmp_path):
    folded = tmp_path / "profile.txt"
    folded.write_text(
        "thread (1): MainThread;Thread.run (threading.py:10);send (common/queues.py:80) 3\n"
        "thread (1): MainThread;Thread.run (threading.py:10);wait (common/jobs.py:150) 1\n"
        "thread (2): mcp-loop;call (workers/runtime.py:199);send (common/queues.py:81) 4\n"
    )
    text = summarize(folded, top=5)
    assert "8 samples" in text
    assert "50.0%  thread: MainThread" in text and "50.0%  thread: mcp-loop" in text
    assert "87.5%  send (common/queues.py)" in text  # line numbers merged, counted once
    assert "threading.py" not in text
