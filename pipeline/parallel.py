"""Run a stage's chunks: in this process, on a local dask cluster, or on an existing one.

Workers only compute; every result comes back to the main process, which writes it and marks the
chunk done. So the store has a single writer however many workers there are, results are written
in the order they finish (each chunk to its own region), and the bytes never depend on the worker
count or the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("i2p")


@contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A dask.distributed client: connects to ``scheduler`` or starts ``workers`` local processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="10s")
        log.info("using dask scheduler %s (%d workers)", scheduler, len(client.scheduler_info()["workers"]))
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def run_tasks(
    fn: Callable[..., Any],
    tasks: list[tuple[Any, ...]],
    on_result: Callable[[tuple[Any, ...], Any], None],
    workers: int = 1,
    scheduler: str | None = None,
) -> None:
    """Call ``fn(*task)`` for every task and hand each result to ``on_result(task, result)`` here.

    With one worker and no scheduler the tasks run in this process, in order. Otherwise they run
    on dask with at most ``2 × workers`` in flight, so memory stays bounded on long runs.
    """
    if workers <= 1 and not scheduler:
        for task in tasks:
            on_result(task, fn(*task))
        return
    from distributed import as_completed

    with dask_client(workers, scheduler) as client:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        pending = list(reversed(tasks))
        futures = {}

        def submit_next() -> None:
            task = pending.pop()
            future = client.submit(fn, *task, pure=False)
            futures[future] = task

        for _ in range(min(len(pending), 2 * n_workers)):
            submit_next()
        stream = as_completed(list(futures))
        for future in stream:
            task = futures.pop(future)
            result = future.result()  # re-raises the worker's exception here
            on_result(task, result)
            if pending:
                submit_next()
                stream.add(list(futures)[-1])
