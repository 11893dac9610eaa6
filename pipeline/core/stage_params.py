"""The base of every stage's params model: frozen, no unknown keys, NaN and inf refused, and errors that
name the stage, the key, the value, where it came from and the closest valid key (the models themselves:
:mod:`pipeline.core.params`)."""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.core.errors import ConfigError

SEED_MAX = 2**32 - 1  # NumPy seeds are 32-bit


class StageParams(BaseModel):
    """Base: frozen, no unknown keys, friendly errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # NaN / inf: never a value
    STAGE: ClassVar[str] = ""
    RUNTIME: ClassVar[frozenset[str]] = frozenset()
    LEGACY: ClassVar[dict[str, Any]] = {}  # a param a recorded output lacks was built with this value

    @classmethod
    def build(
        cls, values: dict[str, Any], where: str = "stages.yaml", origins: dict[str, str] | None = None
    ) -> StageParams:
        """Validate ``values``; raise ConfigError naming the stage, the key and the closest valid key.

        origins: where a key's value came from when not from ``where`` (e.g. "--set train.lr=2",
        "--mask-ratio"), so an error names what the user actually typed."""
        known, origins = list(cls.model_fields), origins or {}
        for key in values:
            if key not in known:
                close = closest_key(key, known)
                hint = f"did you mean {cls.STAGE}.{close}?" if close else f"valid keys: {', '.join(known)}"
                raise ConfigError(f"unknown parameter {cls.STAGE}.{key} in {origins.get(key, where)}", hint)
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            source = origins.get(str(first["loc"][0]) if first["loc"] else "", where)
            hint = f"see the defaults in stages.yaml under {cls.STAGE}.params"
            if first["type"] == "literal_error":  # a typo in a choice (a source name, a masking mode …)
                choices = [c.strip(" '") for c in first["ctx"]["expected"].replace(" or ", ",").split(",")]
                close = difflib.get_close_matches(str(first.get("input")), choices, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else f"choose one of {', '.join(choices)}"
            what = f"value for {cls.STAGE}.{key}" if key else f"{cls.STAGE} params"  # a rule across params
            raise ConfigError(
                f"invalid {what} in {source}: {first['msg']} (got {first.get('input')!r})", hint
            ) from None

    def fingerprint_params(self) -> dict[str, Any]:
        """The params that define the stage's output, JSON-ready: RUNTIME ones removed, and those
        :meth:`unhashed` names for these values."""
        left_out = self.RUNTIME | self.unhashed()
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in left_out}

    def unhashed(self) -> frozenset[str]:
        """Params left out of the fingerprint for these values: a param added later hashes, at the
        value outputs had before it existed, as those outputs did, so they stay up to date."""
        return frozenset()

    def inert(self) -> dict[str, str]:
        """Params that these values make ineffective → what would make them count (for a warning
        when the user sets one)."""
        return {}


def closest_key(key: str, known: list[str]) -> str | None:
    """The known key a typo most plausibly meant, or None: a close spelling (difflib ratio ≥ 0.75),
    else a key that is a prefix of the typo or has it as a prefix ("lr_rate" → "lr", "drop" →
    "drop_path"). Loose matches such as "lr_rate" → "drop_path" (ratio 0.5) are not suggested."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        return close[0]
    prefixed = [k for k in known if min(len(k), len(key)) >= 2 and (key.startswith(k) or k.startswith(key))]
    return max(prefixed, key=lambda k: difflib.SequenceMatcher(None, key, k).ratio(), default=None)
