"""What a command asks the pipeline for, and the one way every command brings a stage up to date.

A :class:`Request` is built by the CLI from its flags once they are merged into the config (which
validates them): the data root, the dataset and run the user named (None: chosen here), and what the
process's environment says (offline, torchrun's ranks, where new stores go). The CLI reads the
environment; nothing below it does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.devices import Distributed
from pipeline.runner import execute
from pipeline.runner.plan import outputs_used, plan
from pipeline.storage import datasets, rundir
from pipeline.storage.contract import Context


@dataclass(frozen=True)
class Request:
    """One command's validated ask: config (stages.yaml ← --set ← typed flags), where data lives,
    the dataset and run named on the command line, and the process's environment."""

    config: Config
    data_root: Path
    dataset: str | None = None  # None: the run's dataset, else the only one prepared, else the default
    run: str | None = None  # --run, where it also picks the dataset
    offline: bool = False  # HF_HUB_OFFLINE: no teacher downloads
    dist: Distributed = Distributed()  # torchrun's ranks
    store_root: str | None = None  # --store-root / I2P_STORE_ROOT; None: stores go under the data root

    def with_config(self, config: Config) -> Request:
        return replace(self, config=config)

    def with_dataset(self, dataset: str | None) -> Request:
        return replace(self, dataset=dataset)

    def context(self, pins: dict[str, Path] | None = None) -> Context:
        """The planning context: which dataset (given; else the run's; else the only one prepared; else
        the synthetic default), the data root, offline or not, torchrun's ranks; ``pins``: stage → an
        output to use as is."""
        name = self.dataset
        if name is None and self.run:
            name = rundir.read(rundir.run_dir(self.data_root, self.run)).dataset
        name = datasets.choose(self.data_root, name)
        return Context(
            self.config, self.data_root, name, self.offline, self.dist, dict(pins or {}), self.store_root
        )


def build(stage: str, ctx: Context) -> Path:
    """Plan ``stage`` (and what it needs), log which stores it uses, bring it up to date; its output."""
    p = plan(stage, ctx)
    logging.getLogger("i2p").info("%s on %s uses %s", stage, p.dataset, outputs_used(p, ctx.data_root))
    return execute.run(p, ctx)
