"""Read stages.yaml, apply ``--set stage.key=value`` overrides, validate each stage's params.

The CLI builds one :class:`Config` per command and passes validated params objects down; nothing
below this module reads stages.yaml or the environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pipeline import PACKAGED_STAGES
from pipeline.core.errors import ConfigError
from pipeline.core.params import STAGES
from pipeline.core.stage_params import StageParams


def find_stages_file(explicit: Path | None = None) -> Path:
    """``explicit``, else ./stages.yaml, else the copy installed with the package."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"stages file {explicit} does not exist", "pass an existing file to --stages")
        return explicit
    local = Path.cwd() / "stages.yaml"
    return local if local.is_file() else PACKAGED_STAGES


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"train.mask_ratio=0.7"`` → ("train", "mask_ratio", 0.7); values are parsed as YAML scalars."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(
            f"override {text!r} is not of the form stage.key=value", "e.g. --set train.mask_ratio=0.7"
        )
    target, raw = text.split("=", 1)
    stage, key = target.split(".", 1)
    if stage not in STAGES:
        close = difflib.get_close_matches(stage, list(STAGES), n=1)
        hint = f"did you mean {close[0]}.{key}?" if close else f"stages: {', '.join(STAGES)}"
        raise ConfigError(f"override {text!r} names unknown stage {stage!r}", hint)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return stage, key, value


@dataclass(frozen=True)
class StageDecl:
    """One stage as stages.yaml declares it: its params (what it needs is the stage table's, in code)."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Config:
    """The declared params plus this command's overrides. ``params(stage)`` validates on demand."""

    path: Path
    stages: dict[str, StageDecl]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[str, dict[str, str]] = field(default_factory=dict)  # stage → key → "--set …" / "--flag"

    def declared(self, stage: str) -> dict[str, Any]:
        """The params stages.yaml declares for ``stage`` (empty when the file leaves it out)."""
        return dict(self.stages[stage].params) if stage in self.stages else {}

    def params(self, stage: str, **flags: Any) -> StageParams:
        """stages.yaml values ← --set overrides ← typed CLI flags (those that are not None)."""
        values = {**self.declared(stage), **self.overrides.get(stage, {})}
        values.update({k: v for k, v in flags.items() if v is not None})
        origins = {**self.origins.get(stage, {}), **{k: _flag(k) for k, v in flags.items() if v is not None}}
        return STAGES[stage].build(values, where=str(self.path), origins=origins)

    def with_values(self, stage: str, **values: Any) -> Config:
        """A copy with typed CLI flags (those not None) merged into ``stage``'s overrides, validated."""
        merged = {**self.overrides.get(stage, {}), **{k: v for k, v in values.items() if v is not None}}
        origins = {**self.origins.get(stage, {}), **{k: _flag(k) for k, v in values.items() if v is not None}}
        config = replace(
            self, overrides={**self.overrides, stage: merged}, origins={**self.origins, stage: origins}
        )
        config.params(stage)
        return config

    def only(self, stage: str) -> Config:
        """A copy that keeps the overrides of ``stage`` alone (the others' are for another dataset)."""
        keep = {k: v for k, v in self.overrides.items() if k == stage}
        return replace(self, overrides=keep, origins={k: v for k, v in self.origins.items() if k == stage})

    def with_options(self, stage: str, options: Mapping[str, Any], **renamed: Any) -> Config:
        """:meth:`with_values` with a command's options: every entry of ``options`` (the command's
        arguments, ``locals()`` at its top) named as a field of ``stage``'s params, then ``renamed`` (the
        values of options whose name or type differs from their field's). A flag is named once, as its field."""
        fields = STAGES[stage].model_fields
        return self.with_values(stage, **{**{k: v for k, v in options.items() if k in fields}, **renamed})


def _flag(key: str) -> str:
    """The command-line option that sets ``key`` (typed flags are named after their param)."""
    return f"--{key.replace('_', '-')}"


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load and check stages.yaml; every declared stage's params are validated here, once."""
    path = find_stages_file(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    declared = raw.get("stages")
    if not isinstance(declared, dict) or set(raw) - {"stages"}:
        raise ConfigError(f"{path} must hold one 'stages:' mapping", "see the stages.yaml shipped with i2p")
    stages: dict[str, StageDecl] = {}
    for name, body in declared.items():
        if name not in STAGES:
            close = difflib.get_close_matches(name, list(STAGES), n=1)
            raise ConfigError(
                f"{path} declares unknown stage {name!r}", f"did you mean {close[0]}?" if close else None
            )
        body = body or {}
        extra = set(body) - {"params"}
        if extra:
            raise ConfigError(
                f"stage {name} in {path} has keys {sorted(extra)}; a stage declares only its params",
                "what a stage needs and writes is fixed by i2p (see `i2p status`); remove those keys",
            )
        stages[name] = StageDecl(name, dict(body.get("params") or {}))
    by_stage: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, str]] = {}
    for text in overrides or []:
        stage, key, value = parse_override(text)
        by_stage.setdefault(stage, {})[key] = value
        origins.setdefault(stage, {})[key] = f"--set {text}"
    config = Config(path=path, stages=stages, overrides=by_stage, origins=origins)
    for name in STAGES:
        config.params(name)  # fail early, naming the key, for stages.yaml and overrides alike
    return config
