"""The CLI layer's shared pieces: option types, the global options (declared once, accepted before or
after a command's name), the session every command runs in, and the request it hands the pipeline.

Only the CLI layer (``cli*.py``) reads the environment (``I2P_DATA_ROOT``, ``I2P_STORE_ROOT``,
``I2P_DEBUG``, ``HF_HUB_OFFLINE``, torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``) and imports typer.
Results go to stdout (``cli_output``); logs, progress and errors to stderr.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from pipeline.core.errors import I2PError, Interrupted


def default(stage: str, key: str) -> str:
    """The default of ``stage.key`` as the packaged stages.yaml declares it, which a test holds equal to the
    params models (read as YAML so that ``i2p --help`` does not import pydantic and the models)."""
    return str(_packaged_defaults()[stage]["params"][key])


@cache
def _packaged_defaults() -> dict[str, Any]:
    import yaml

    from pipeline import PACKAGED_STAGES

    return yaml.safe_load(PACKAGED_STAGES.read_text())["stages"]


DataRoot = Annotated[
    Path | None,
    typer.Option("--data-root", envvar="I2P_DATA_ROOT", help="Where stores and runs live (default ./data)."),
]
StoreRoot = Annotated[
    str | None,
    typer.Option(
        "--store-root",
        envvar="I2P_STORE_ROOT",
        show_envvar=True,
        help="Where new stores go: a folder or an fsspec URL such as s3://bucket/prefix (default: the "
        "data root). Dataset records, runs and locks stay in the data root.",
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a stages.yaml value for this command: stage.key=value (repeatable)."
    ),
]
# Flags (bool or counted) take no value: metavar="" keeps the help from showing `<bool>` / `<int>`.
Verbose = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True, metavar="", show_default=False, help="More logging: -v (or -vv) debug."
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", metavar="", help="Only warnings and errors; no progress bars.")
]
Stages = Annotated[Path | None, typer.Option("--stages", help="stages.yaml to use (default ./stages.yaml).")]
Dataset = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="Dataset name; may be omitted when exactly one is prepared."),
]
Teacher = Annotated[
    str | None,
    typer.Option(
        help="Whose features: clip-vit-b16 | clip-vit-b32 | clip-vit-l14 | tiny-random | open_clip:MODEL/TAG "
        "(default: the teacher last cached for the dataset)."
    ),
]
Device = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
Run = Annotated[
    str | None,
    typer.Option("--run", help="Run name under <data-root>/runs (default: the dataset's last run)."),
]


@dataclass
class Globals:
    data_root: Path | None = None
    sets: list[str] | None = None
    verbose: int = 0
    quiet: bool = False
    stages: Path | None = None

    def merged(self, data_root: Path | None, sets: list[str] | None, verbose: int, quiet: bool) -> Globals:
        """These (given before the command's name) with the same options given after it: its --data-root
        wins, --set values add up, the louder -v counts and either -q."""
        both = [*(self.sets or []), *(sets or [])]
        return Globals(
            data_root or self.data_root, both, max(verbose, self.verbose), quiet or self.quiet, self.stages
        )


def _print_version(value: bool) -> None:
    """``--version``: the package version on stdout (``i2p 0.1.0``), then exit 0."""
    if value:
        from pipeline import __version__

        typer.echo(f"i2p {__version__}")
        raise typer.Exit()


def global_options(
    ctx: typer.Context,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    stages: Stages = None,
    store_root: StoreRoot = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print i2p's version and exit."
        ),
    ] = False,
) -> None:
    """Global options; each command also accepts them after its name (but --store-root: global only)."""
    ctx.obj = Globals(data_root, sets, verbose, quiet, stages)
    if store_root:  # one command per process: the option stands for the variable, read by store_root()
        os.environ["I2P_STORE_ROOT"] = store_root


# The global options a command also accepts after its name: (parameter, type, default).
AFTER_NAME = (
    ("data_root", DataRoot, None),
    ("sets", Sets, None),
    ("verbose", Verbose, 0),
    ("quiet", Quiet, False),
)


def with_global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a command taking ``ctx``) as a command that also takes :data:`AFTER_NAME` after its name;
    their values are merged into ``ctx.obj`` (:meth:`Globals.merged`) before ``fn`` runs, so the command
    declares none of them and reads them through :func:`session`."""
    signature = inspect.signature(fn, eval_str=True)
    kind = inspect.Parameter.KEYWORD_ONLY
    added = [inspect.Parameter(name, kind, default=d, annotation=t) for name, t, d in AFTER_NAME]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        after = [kwargs.pop(name) for name, _, _ in AFTER_NAME]
        ctx = kwargs["ctx"]
        ctx.obj = (ctx.obj or Globals()).merged(*after)
        return fn(**kwargs)

    command.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *added])
    return command


def store_root() -> str | None:
    """``--store-root`` / ``I2P_STORE_ROOT``: where stores go when not under the data root (None: under it)."""
    return os.environ.get("I2P_STORE_ROOT") or None


@contextmanager
def session(
    ctx: typer.Context,
    interrupted: str = "interrupted: finished chunks of stores are kept; rerun the command to continue",
) -> Iterator[tuple[Any, Path]]:
    """Set up logging, load the config; print known errors as one red line plus a hint (exit 2)."""
    from pipeline.core.console import console, setup_logging

    g: Globals = ctx.obj or Globals()
    setup_logging(-1 if g.quiet else g.verbose)
    caught: dict[str, str] = {}
    root = Path(g.data_root or "data").expanduser().resolve()
    try:
        with _signals_as_interrupts(caught):
            from pipeline.core.config import load_config

            config = load_config(g.stages, g.sets or [])
            yield config, root
    except Interrupted as err:  # a stop that a stage turned into a message (e.g. the checkpoint it saved)
        console.print(f"[yellow]{err.message}[/]" + (f"\n[dim]hint:[/] {err.hint}" if err.hint else ""))
        raise typer.Exit(err.exit_code) from None
    except I2PError as err:
        report_error(err)
        raise typer.Exit(2) from None
    except OSError as err:  # the filesystem refused a write: read-only, not permitted, full
        from pipeline.core.errors import write_error

        known = write_error(err, root, os.environ.get("I2P_STORE_ROOT"))
        if known is None:
            raise
        report_error(known)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as err:  # a signal's name travels in the exception when a loop re-raised it
        told = str(err.args[0]) if err.args and str(err.args[0]).startswith("SIG") else "SIGINT"
        name = caught.get("signal", told)
        by = "" if name == "SIGINT" else f" by {name}"
        console.print(f"[yellow]{interrupted.replace('interrupted', 'interrupted' + by, 1)}[/]")
        raise typer.Exit(128 + int(getattr(signal, name))) from None


@contextmanager
def _signals_as_interrupts(caught: dict[str, str]) -> Iterator[None]:
    """A scheduler's SIGTERM (preemption) or SIGUSR1 (``sbatch --signal``) stops a command as Ctrl-C does:
    finished work is kept and the command says so, exiting 128 + the signal's number. The training loop
    installs its own handler meanwhile (it finishes the step and saves a checkpoint first)."""

    def handler(signum: int, frame: Any) -> None:
        caught["signal"] = signal.Signals(signum).name
        raise KeyboardInterrupt

    names = [n for n in ("SIGTERM", "SIGUSR1") if hasattr(signal, n)]
    try:
        previous = {n: signal.signal(getattr(signal, n), handler) for n in names}
    except ValueError:  # not the main thread (a test runner's worker): signals keep their handlers
        yield
        return
    try:
        yield
    finally:
        for n, before in previous.items():
            signal.signal(getattr(signal, n), before)


def report_error(err: I2PError) -> None:
    from rich.markup import escape

    from pipeline.core.console import console

    if os.environ.get("I2P_DEBUG") == "1":
        console.print_exception()
    console.print(f"[bold red]error:[/] {escape(err.message)}", highlight=False, soft_wrap=True)
    if err.hint:
        console.print(f"[dim]hint:[/] {escape(err.hint)}", highlight=False, soft_wrap=True)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")


def distributed() -> Any:
    from pipeline.core.devices import Distributed

    keys = (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0))
    return Distributed(*(int(os.environ.get(k, d)) for k, d in keys))


def request(config: Any, root: Path, dataset: str | None = None, run: str | None = None) -> Any:
    """The pipeline request of a command: its config (flags merged in), data root, the dataset and run it
    names, and what the environment says (offline, torchrun's ranks, --store-root)."""
    from pipeline.runner.request import Request

    return Request(config, root, dataset, run, offline(), distributed(), store_root())


def hide_flag_types(command: Any, parent: Any = None) -> Any:
    """Set ``metavar=""`` on every flag of a click ``command`` and its sub-commands (``--help`` too).

    typer ≥ 0.20 shows a flag's Python type (``--help <bool>``) in the help table, which reads as if
    the flag took a value; a flag with an empty metavar shows none. Returns ``command``."""
    ctx = command.context_class(command, parent=parent)
    for param in command.get_params(ctx):
        if param.param_type_name == "option" and (param.is_flag or param.count):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        hide_flag_types(sub, ctx)
    return command


class FlagGroup(TyperGroup):
    """The ``i2p`` command group (``typer.Typer(cls=FlagGroup)``): help shows flags without a type."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "_flags_hidden", False):
            self._flags_hidden = hide_flag_types(self) is self
        return super().main(*args, **kwargs)
