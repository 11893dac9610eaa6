"""How a fine-tuning or few-shot run is described in report.md: its recipe, its optimisation and its voting
protocol (method §9.2, §12.4), from the configs it ran with (:mod:`i2pmae.recipes`)."""

from __future__ import annotations

from typing import Any

from pipeline.evaluate.reports import mean_std, pct


def describe_recipe(recipe: Any, ccfg: Any, fcfg: Any) -> str:
    """The recipe's inputs, classifier, loss and augmentation (method §9.2): a Recipe, ClassifierConfig and
    FinetuneConfig in, one sentence out."""
    aug = {
        "scale-translate": "ScaleAndTranslate(2/3–3/2, ±0.2)",
        "scale-rotate": "ScaleAndTranslate(0.9–1.1, 0) + one y-rotation U(−π, π) per batch",
        "none": "none",
    }[fcfg.augment]
    return (
        f"{recipe.name}: {fcfg.points} points (train: FPS of a shuffled cloud to the pool, one random subset "
        f"per batch; test: FPS from index 0); groups {'/'.join(map(str, ccfg.num_groups))} × "
        f"{'/'.join(map(str, ccfg.group_sizes))}; radii {'/'.join(map(str, ccfg.local_radius))}; fresh LayerNorm, "
        f"{ccfg.pooling} pooling, MLP head to {ccfg.num_classes} classes; label smoothing {fcfg.label_smoothing}; "
        f"augmentation {aug}"
    )


def describe_optimisation(fcfg: Any) -> str:
    """Optimiser, schedule (t_initial and epochs run, method §9.2), batch and clipping of a FinetuneConfig."""
    decay = (
        "decay on token_embed too" if fcfg.decay_token_fix else "no decay for 1-D, biases and 'token' names"
    )
    return (
        f"AdamW lr {fcfg.lr:g}, wd {fcfg.weight_decay:g} ({decay}); warm-up {fcfg.warmup_epochs} + cosine over "
        f"{fcfg.t_initial} epochs, one-epoch lag; {fcfg.epochs} epochs; batch {fcfg.batch_size}; "
        f"grad-norm clip {fcfg.grad_clip:g}; all parameters trained"
    )


def vote_protocol(fcfg: Any, passes: list[float] | None = None) -> str:
    """How a voted number was obtained: one pass, or the maximum over ``vote_repeats`` (with their mean)."""
    views = f"{fcfg.votes} votes, batch {fcfg.vote_batch_size}"
    if fcfg.vote_repeats == 1:
        return f"one pass of {views}"
    mean = f"; their mean {pct(sum(passes) / len(passes))}" if passes else ""
    return f"the maximum over {fcfg.vote_repeats} passes of {views}, as the paper's voted test{mean}"


def describe_voting(fcfg: Any, results: list) -> str:
    """The report's sentence on voting (method §9.2, §12.4)."""
    if not fcfg.votes:
        return (
            "Voting is not defined for this recipe (the paper's code raises for 2048-point inputs), so only "
            "unvoted accuracies are given."
        )
    how = (
        f"FPS pool, a random subset shared by each batch of {fcfg.vote_batch_size}, ScaleAndTranslate; "
        "logits averaged"
    )
    if fcfg.vote_repeats == 1:
        return f"Voted: one pass of {fcfg.votes} votes ({how}), never the maximum over repeated passes."
    means = [sum(r.last_vote_passes) / len(r.last_vote_passes) for r in results if r.last_vote_passes]
    mean = f" The mean over passes of the last epoch's weights: {mean_std(means)}." if means else ""
    return (
        f"**Voted: the maximum over {fcfg.vote_repeats} passes** of {fcfg.votes} votes each ({how}; "
        f"finetune.vote_repeats={fcfg.vote_repeats}), as the paper's voted test reports it: a choice "
        f"on the test split, optimistic (method §12.4).{mean}"
    )
