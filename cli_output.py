"""What the commands print on stdout: results go through :func:`report`, which turns them into lines
(:func:`lines`) and prints them with :func:`say` (``i2p status`` prints its rich tables itself, from
``pipeline.runner.status``). Logs, progress bars and errors go to stderr
(``pipeline.core.console``). The pipeline types are imported where they are matched, so importing this
module costs only rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def say(text: str) -> None:
    """A result line, on stdout (rich markup allowed; plain when stdout is not a terminal)."""
    from rich.console import Console

    Console(highlight=False, soft_wrap=True).print(text)


def report(result: Any) -> None:
    """Print a command's result (or lines already made from one), line by line."""
    for line in result if isinstance(result, list) else lines(result):
        say(line)


def lines(result: Any) -> list[str]:
    """The lines an evaluation's result prints: a tracked stage's record, or a direct evaluation's outcome."""
    from pipeline.runner import evaluations as ev

    if isinstance(result, ev.Recorded):
        return record_lines(result.stage, result.record)
    if isinstance(result, ev.SVMResult):
        out = result.outcome
        return [
            f"linear SVM on {result.store}: [bold]{100 * out.accuracy:.2f} %[/] (C={out.c:g}, {out.n_points} "
            f"points, {out.bn.text()}, {result.encoder}) → {_here(out.report)}",
            *_note(out.bn),
        ]
    if isinstance(result, ev.EmbedResult):
        objects, channels = result.shape
        where = f"{result.store}/{result.split}, points {result.points}, {result.bn.text()}"
        from pipeline.evaluate.embed import index_path

        return [
            f"wrote {result.path}: {objects} × {channels} float32 ({where})",
            f"wrote {index_path(result.path)}: row, id, label of each object",
            *_note(result.bn),
        ]
    if isinstance(result, ev.FinetuneResult):
        return _finetune_lines(result)
    if isinstance(result, ev.FewshotResult):
        from pipeline.evaluate.reports import mean_std

        settings = [
            f"{w}-way {s}-shot: last epoch {mean_std([r.last_acc for r in rs])}"
            for w, s, rs in result.settings
        ]
        return [*settings, f"report → {_here(result.report)}"]
    from pipeline.evaluate.partseg import PartsegOutcome

    if isinstance(result, PartsegOutcome):
        where = f"on {result.store}"
        return [*_partseg_lines(where, result.result.summary()), f"report → {_here(result.report)}"]
    raise TypeError(f"no output format for {type(result).__name__}")


def record_lines(stage: str, record: dict[str, Any]) -> list[str]:
    """The lines an evaluation stage's ``evals/*.json`` record prints (eval, finetune, fewshot)."""
    from pipeline.evaluate.reports import mean_std

    r, where = record["result"], f"on {record.get('dataset')} (run {record.get('run')})"
    if stage == "eval":
        from pipeline.evaluate.bnstats import BNProtocol

        bn = {k: BNProtocol.from_record(r.get(k)) for k in ("bn", "random_init_bn")}
        notes = [
            f"  {who}: {b.note()}"
            for who, b in zip(("pre-trained", "random init"), bn.values(), strict=True)
            if b.note()
        ]
        return [
            f"linear SVM {where}: [bold]{100 * r['accuracy']:.2f} %[/], random init "
            f"{100 * r['random_init_accuracy']:.2f} % (C={r['svm_c']:g}, {r['points']} points, "
            f"{bn['bn'].text()})",
            *notes,
        ]
    if stage == "finetune":
        return [
            f"fine-tuning {where}: last epoch {mean_std(r['last_acc'])}, best epoch "
            f"{mean_std(r['best_acc'])} (chosen on the test split)"
        ]
    if stage == "partseg":
        return _partseg_lines(where, r)
    return [f"{setting}: last epoch {mean_std(accs)}" for setting, accs in r.items()]


def stage_lines(target: str, out: Path, record: dict[str, Any] | None) -> list[str]:
    """``i2p run``: a target's output, then (an evaluation stage) its result, indented."""
    return [f"{target}: {out}", *(f"  {line}" for line in (record_lines(target, record) if record else []))]


def garbage_lines(items: list[Any], root: Path) -> list[str]:
    """``i2p gc``: one line per item (size, kind, path, why), then what removing them would free."""
    from pipeline.runner.status import size_text

    listed = [f"{size_text(g.bytes):>10}  {g.kind:<15}  {g.path.relative_to(root)}  ({g.why})" for g in items]
    return listed or ["nothing to collect"]


def freed_line(items: list[Any], freed: int | None) -> str:
    """``i2p gc``: what was freed (``freed`` bytes, with --yes), else what --yes would free."""
    from pipeline.runner.status import size_text

    if freed is not None:
        return f"freed {size_text(freed)}"
    total = sum(g.bytes for g in items)
    return f"{size_text(total)} in {len(items)} item(s) would be freed; rerun with --yes to remove them"


def teacher_lines(target: Path, record: dict[str, Any]) -> list[str]:
    """``i2p teacher train``: the weights written, the record, and how well the teacher learned."""
    from pipeline.features.tiny_teachers import record_path

    acc, data = record["accuracy"], record["data"]
    return [
        f"weights: {target} ({record['weights_bytes']} bytes, sha256 {record['weights_sha256']})",
        f"record: {record_path(target)}",
        f"trained on {data['dataset']} train (generator v{data['generator_version']}, {data['objects']} objects) "
        f"in {record['training']['seconds_total']:.0f} s; train views {100 * acc['train_views_head']:.1f} %, "
        f"test-view linear probe {100 * acc['test_views_probe']:.1f} % (chance {100 * acc['chance']:.1f} %)",
    ]


def _finetune_lines(result: Any) -> list[str]:
    from pipeline.evaluate.reports import mean_std

    res, where = result.outcome, _here(result.outcome.report)
    if res.evaluated is not None:
        acc, voted = res.evaluated
        vote = f", voted {100 * voted:.2f} %" if voted is not None else ""
        return [f"fine-tuned classifier on {result.store}: {100 * acc:.2f} %{vote} → {where}"]
    last, best = mean_std([r.last_acc for r in res.results]), mean_std([r.best_acc for r in res.results])
    return [
        f"fine-tuning on {result.store}: last epoch {last}, best epoch {best} (chosen on the test split) → {where}"
    ]


def _partseg_lines(where: str, r: dict[str, Any]) -> list[str]:
    last, best = r["last"], r["best_by_instance"]
    return [
        f"part segmentation {where}: last epoch ({last['epoch']}) instance mIoU "
        f"[bold]{100 * last['instance_miou']:.2f} %[/], class mIoU {100 * last['class_miou']:.2f} %",
        f"  best epoch by instance mIoU ({best['epoch']}, chosen on the test split): instance "
        f"{100 * best['instance_miou']:.2f} %, class {100 * best['class_miou']:.2f} %; the reference's "
        f"independent maxima: instance {100 * r['max_instance_miou']:.2f} %, class {100 * r['max_class_miou']:.2f} %",
    ]


def _note(bn: Any) -> list[str]:
    """The staleness warning of a BatchNorm protocol, on its own line under the number it concerns."""
    return [f"  [yellow]{bn.note()}[/]"] if bn.note() else []


def _here(path: Path) -> str:
    from pipeline.storage.remote import relative

    return relative(path, Path.cwd())
