"""Dataset and run names: one path component each, checked where a name becomes a path.

A name is joined to the data root (``datasets/<name>.json``, ``points/<name>-<fp8>.zarr``,
``runs/<name>/``), so a name that holds a separator, a ``..`` or an absolute path would put outputs outside
it. The rule: a letter, digit (of any script) or ``_``, then letters, digits, ``.``, ``_``, ``+`` or ``-``, at
most 128 characters. Every path built from a checked name lies directly under its folder of the data root.
"""

from __future__ import annotations

import re

from pipeline.core.errors import ConfigError

RULE = (
    "a name starts with a letter, digit or '_' (any script) and holds only letters, digits, '.', '_', '+' and '-' "
    "(at most 128 characters: no '/', no '..' at its start, not absolute)"
)
_NAME = re.compile(r"\w[\w.+-]{0,127}")


def is_name(text: str) -> bool:
    return isinstance(text, str) and _NAME.fullmatch(text) is not None


def as_name(text: str, fallback: str) -> str:
    """A name derived from any text (a checkpoint's file stem): runs of other characters become '-';
    ``fallback`` when nothing is left."""
    fixed = re.sub(r"[^\w.+-]+", "-", str(text)).strip("-.+")[:128]
    return fixed if is_name(fixed) else fallback


def check_name(kind: str, name: str) -> str:
    """``name`` when it follows :data:`RULE`; else ConfigError naming the rule, the value and a fix.
    ``kind`` ("dataset", "run") names what it is in the message."""
    if is_name(name):
        return name
    raise ConfigError(
        f"{kind} name {name!r} is not allowed: {RULE}", f"choose another, e.g. {as_name(name, kind)!r}"
    )
