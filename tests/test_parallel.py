"""Stage chunks in forked local workers (which write their own chunks) and on a dask cluster: same bytes."""

from __future__ import annotations

import os

import pytest

from pipeline.core.parallel import run_tasks
from pipeline.core.params import PrepareParams, RenderParams
from pipeline.prepare.points import prepare
from pipeline.runner.execute import build_store
from tests.builders import array_bytes


def _square(x: int) -> int:
    return x * x


def _fail(x: int) -> int:
    raise ValueError(f"task {x} failed")


def _pid(task: tuple, result: int) -> tuple[int, int]:
    return result, os.getpid()


def test_forked_workers_run_write_themselves_and_raise_task_errors_here():
    got = {}
    run_tasks(_square, [(k,) for k in range(7)], lambda t, r: got.update({t[0]: r}), workers=2, write=_pid)
    assert {k: v[0] for k, v in got.items()} == {k: k * k for k in range(7)}
    assert os.getpid() not in {pid for _, pid in got.values()}  # written in the workers, not here
    with pytest.raises(ValueError, match="task 3 failed"):
        run_tasks(_fail, [(3,)], lambda t, r: None, workers=2)


BASE = PrepareParams(synthetic_per_class=2, points=256, oversample=2, chunk=4)
VIEWS = RenderParams(subset=128, chunk=4)


def test_prepare_and_render_in_forked_workers_give_the_same_bytes_as_in_process(tmp_path):
    one = prepare(BASE, tmp_path / "one")
    forked = prepare(BASE.model_copy(update={"workers": 2}), tmp_path / "forked")
    assert array_bytes(one.path) == array_bytes(forked.path)
    rendered = build_store("render", VIEWS, one.path, tmp_path / "one")
    assert array_bytes(rendered) == array_bytes(
        build_store("render", VIEWS.model_copy(update={"workers": 2}), forked.path, tmp_path / "forked")
    )


def test_prepare_on_a_dask_cluster_writes_every_result_here_and_gives_the_same_bytes(tmp_path):
    from distributed import LocalCluster

    one = prepare(BASE, tmp_path / "one")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        on_dask = prepare(BASE.model_copy(update={"scheduler": cluster.scheduler_address}), tmp_path / "dask")
    assert array_bytes(one.path) == array_bytes(on_dask.path)


@pytest.mark.slow
def test_render_on_a_dask_cluster_gives_the_same_bytes(tmp_path):
    from distributed import LocalCluster

    one = prepare(BASE, tmp_path / "one")
    rendered = build_store("render", VIEWS, one.path, tmp_path / "one")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        dask_views = VIEWS.model_copy(update={"scheduler": cluster.scheduler_address})
        assert array_bytes(rendered) == array_bytes(
            build_store("render", dask_views, one.path, tmp_path / "dask")
        )
