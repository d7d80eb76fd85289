from workers.metrics import BUCKETS, WorkerMetrics


def test_call_metrics_snapshot_has_cumulative_buckets_per_server():
    metrics = WorkerMetrics()
    metrics.observe_call("alpha", "succeeded", 0.003)
    metrics.observe_call("alpha", "timeout", 70.0)  # beyond the last bucket: counted in +Inf only
    snap = metrics.snapshot({"alpha": {"reconnects": 2}}, in_flight=1)
    assert snap["calls"] == {"alpha": {"succeeded": 1, "timeout": 1}}
    assert snap["reconnects"] == {"alpha": 2}
    histogram = snap["callSeconds"]["alpha"]
    assert histogram["counts"][BUCKETS.index(0.005)] == 1
    assert histogram["counts"][-1] == 1 and histogram["count"] == 2
    assert histogram["sum"] == 70.003
