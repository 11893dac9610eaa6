"""Run a stage's chunks: in this process, in local worker processes, or on an existing dask cluster.

A task computes one work chunk; ``write(task, result)`` stores it in the chunk's own region (its
own shard and chunk files) and returns a small summary; ``on_result(task, summary)`` then records
it (done mask, attrs, progress) in the main process, which holds the store's lock. Local forked
workers run ``write`` themselves, so compression and file writes scale with them and the main
process only bookkeeps; in this process and on a dask cluster (whose workers may not see the
store's disk) every result comes back and is written here. A chunk is marked done only after its
write returned, whoever wrote it; the bytes never depend on the worker count or the scheduler.

Local workers (``workers > 1`` without a scheduler) are forked from this process on Linux
(``concurrent.futures.ProcessPoolExecutor``): they start in milliseconds with every module already
imported, where a spawned dask ``LocalCluster`` paid ≈ 1 s of imports per worker, and each runs torch
with one thread so that N workers use N cores without oversubscribing them. Elsewhere (no ``fork``)
a local dask cluster is started as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
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


def _one_thread() -> None:
    """Worker initialiser: one compute thread per worker process (N workers → N cores)."""
    os.environ["OMP_NUM_THREADS"] = "1"  # for libraries imported later
    if "torch" in sys.modules:  # forked from a process that already set up torch's thread pool
        sys.modules["torch"].set_num_threads(1)


def _job(fn: Callable[..., Any], write: Callable[..., Any] | None, task: tuple[Any, ...]) -> Any:
    result = fn(*task)
    return write(task, result) if write else result


def run_tasks(
    fn: Callable[..., Any],
    tasks: list[tuple[Any, ...]],
    on_result: Callable[[tuple[Any, ...], Any], None],
    workers: int = 1,
    scheduler: str | None = None,
    write: Callable[[tuple[Any, ...], Any], Any] | None = None,
) -> None:
    """Call ``fn(*task)`` for every task; ``on_result(task, write(task, result))`` runs here.

    ``write`` (a picklable module-level function or partial; None: identity) runs in the worker
    for local forked workers, else here. With one worker and no scheduler the tasks run in this
    process, in order. Otherwise at most ``2 × workers`` are in flight, so memory stays bounded on
    long runs. A task's exception is raised here.
    """
    if workers <= 1 and not scheduler:
        for task in tasks:
            on_result(task, _job(fn, write, task))
        return
    if not scheduler and "fork" in multiprocessing.get_all_start_methods() and sys.platform == "linux":
        _run_forked(fn, write, tasks, on_result, workers)
        return

    def finish(task: tuple[Any, ...], result: Any) -> None:
        on_result(task, write(task, result) if write else result)

    _run_dask(fn, tasks, finish, workers, scheduler)


def _run_forked(fn, write, tasks, on_result, workers: int) -> None:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        pending, futures = list(reversed(tasks)), {}
        while pending or futures:
            while pending and len(futures) < 2 * workers:
                task = pending.pop()
                futures[pool.submit(_job, fn, write, task)] = task
            done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for future in done:
                on_result(futures.pop(future), future.result())


def _run_dask(fn, tasks, on_result, workers: int, scheduler: str | None) -> None:
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
