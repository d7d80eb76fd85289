"""Start and stop a worker process's runtime around Celery's consumer."""

from __future__ import annotations

from common.logs import get_logger
from workers import process as worker_process
from workers import usage_writer
from workers.control import Controller
from workers.runtime import Runtime
from workers.tasks import sweep_lost_jobs

log = get_logger(__name__)


def _queue_ops(consumer):
    """Queue changes run on the consumer's own loop (`call_soon`), never from our threads."""

    def apply(add: set[str], cancel: set[str]) -> None:
        for queue in sorted(add):
            consumer.call_soon(consumer.add_task_queue, queue)
        for queue in sorted(cancel):
            consumer.call_soon(consumer.cancel_task_queue, queue)

    return apply


def start(consumer) -> None:
    nodename = consumer.hostname
    holder: dict[str, Controller] = {}

    async def on_ready(owner, tools):
        await holder["controller"].on_session_ready(owner, tools)

    async def on_error(owner, tools):
        await holder["controller"].on_session_error(owner, tools)

    runtime = Runtime(on_ready, on_error)
    process = worker_process.WorkerProcess(
        nodename=nodename, selection=worker_process.selection_from_env(), runtime=runtime
    )
    controller = holder["controller"] = Controller(process, _queue_ops(consumer))
    controller.queues = {q.name for q in consumer.task_consumer.queues}
    controller.sweeper = sweep_lost_jobs
    process.controller = controller
    worker_process.set_current(process)
    controller.start()
    usage_writer.start_flusher()  # usage stream → Postgres every second (design §4)
    log.info("worker_started", nodename=nodename, queues=sorted(controller.queues))


def stop() -> None:
    try:
        process = worker_process.current()
    except RuntimeError:
        return
    process.controller.stop()
    usage_writer.stop_flusher()  # after the last call finished: flushes what it recorded
    process.runtime.shutdown()
    worker_process.set_current(None)
    log.info("worker_stopped", nodename=process.nodename)
