"""Which BatchNorm statistics frozen-encoder features use (``eval.bn_stats``, ``train.monitor_bn_stats``).

* ``running`` (default, the paper's): the checkpoint's running statistics, in eval mode. Before the
  features, one probe batch (the first :data:`PROBE_OBJECTS` objects of the train split) measures how
  far they are from the data's: the median over channels of running var / re-estimated var. With the
  number of updates the statistics saw since initialisation (``num_batches_tracked``; 0 at random
  initialisation) this says whether they are stale (:func:`i2pmae.batchnorm.is_stale`); a stale number
  is reported with a note beside it.
* ``reestimate``: every encoder BatchNorm is reset and re-estimated (cumulative average) over **every
  object of the train split**, in store order, ``batch_size`` objects per batch, with the features'
  points and forward (:func:`i2pmae.batchnorm.reestimate_batchnorm`); the features are then extracted
  in eval mode.

Either way the model's buffers are put back afterwards (:func:`protocol_applied`), so a model that is
saved later (the training monitor's) never carries the re-estimated statistics into a checkpoint.
An encoder and the baseline it is compared with are always measured under the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

from pipeline.core.console import progress_bar
from pipeline.evaluate.encoders import EvaluationError

PROBE_OBJECTS = 32  # objects of the staleness probe: each BatchNorm sees 32·G·K members (≥ 16 000 at scale 0)
REESTIMATE_SPLIT = "train"


@dataclass(frozen=True)
class BNProtocol:
    """How the BatchNorm statistics of one feature extraction were obtained."""

    bn_stats: str  # "running" | "reestimate"
    split: str | None  # the split re-estimated on (None under running)
    objects: int  # objects re-estimated on (under running: objects of the probe batch)
    batch_size: int  # objects per re-estimation batch (the cumulative average weighs batches equally)
    updates: int  # num_batches_tracked of the statistics as loaded: training forwards since initialisation
    var_ratio: float | None  # median running / re-estimated var on the probe (running only)
    stale: bool  # running statistics that describe their initialisation more than the data

    def text(self) -> str:
        """``bn_stats=running`` or ``bn_stats=reestimate (train split, 360 objects)``: beside every number."""
        if self.bn_stats == "reestimate":
            return f"bn_stats=reestimate ({self.split} split, {self.objects} objects)"
        return "bn_stats=running"

    def detail(self) -> str:
        """How the statistics were obtained, for the report's table."""
        if self.bn_stats == "reestimate":
            return (
                f"reset, then re-estimated as a cumulative average over every object of the {self.split} split "
                f"({self.objects}, {self.batch_size} per batch, store order), BatchNorm in train mode, no "
                f"gradient, no mask; weights unchanged ({self.updates} training updates before)"
            )
        probe = (
            (
                f"; median running / re-estimated variance {self.var_ratio:.3g}× on the first {self.objects} "
                "train objects"
            )
            if self.var_ratio is not None
            else ""
        )
        return f"the checkpoint's running statistics, as the paper evaluates ({self.updates} training updates{probe})"

    def note(self) -> str | None:
        """The staleness warning, or None: ``running BN statistics stale: 0 steps since init; var ratio
        65.3×; try bn_stats=reestimate``."""
        if not self.stale:
            return None
        ratio = f"; var ratio {self.var_ratio:.3g}×" if self.var_ratio is not None else ""
        return f"running BN statistics stale: {self.updates} steps since init{ratio}; try bn_stats=reestimate"

    def record(self) -> dict[str, Any]:
        """JSON-ready, with the note."""
        return {**asdict(self), "note": self.note()}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> BNProtocol:
        """Back from :meth:`record`; an evaluation recorded before ``bn_stats`` existed used running
        statistics, with no staleness measured."""
        if not record:
            return cls("running", None, 0, 0, 0, None, False)
        return cls(**{f.name: record[f.name] for f in fields(cls)})


@contextmanager
def protocol_applied(
    model: Any, train: Any, bn_stats: str, *, n_points: int, selection: str, batch_size: int, device: str
) -> Iterator[BNProtocol]:
    """Put ``model``'s BatchNorm statistics in the state ``bn_stats`` asks for, yield what was done, and
    restore every encoder buffer on exit.

    train: the evaluated dataset's train split (``pipeline.evaluate.extract.Split``; its ``points`` is
    read in order), or None when the dataset has none; n_points / selection: the features' (see
    ``extract.feature_points``). Raises :class:`EvaluationError` for ``reestimate`` without a train split.
    """
    from i2pmae.batchnorm import bn_updates, is_stale, reestimate_batchnorm, variance_ratio
    from i2pmae.recompute import buffers_kept

    if train is None and bn_stats == "reestimate":
        raise EvaluationError(
            f"bn_stats=reestimate re-estimates BatchNorm statistics on the {REESTIMATE_SPLIT} split, which this "
            "dataset does not have",
            "use --set eval.bn_stats=running, or a dataset with a train split",
        )
    model = model.to(device)
    updates = bn_updates(model)
    with buffers_kept(model.h_encoder):
        if bn_stats == "reestimate":
            with progress_bar(f"batchnorm statistics {REESTIMATE_SPLIT}", train.points.shape[0]) as advance:
                objects = reestimate_batchnorm(
                    model,
                    train.points,
                    n_points=n_points,
                    selection=selection,
                    batch_size=batch_size,
                    device=device,
                    progress=advance,
                )
            yield BNProtocol(bn_stats, REESTIMATE_SPLIT, objects, batch_size, updates, None, False)
            return
        probe = train.points[:PROBE_OBJECTS] if train is not None and train.points.shape[0] else None
        ratio = None
        if probe is not None:
            ratio = variance_ratio(model, probe, n_points=n_points, selection=selection, device=device)
        objects = 0 if probe is None else len(probe)
        yield BNProtocol(bn_stats, None, objects, batch_size, updates, ratio, is_stale(updates, ratio))


def train_split(store: Any) -> Any:
    """The store's train split (``extract.Split``), or None when it has none."""
    return store.split(REESTIMATE_SPLIT) if REESTIMATE_SPLIT in store.splits else None
