"""Reading files a user hands us without running code from them.

A pickle can name any Python callable to rebuild an object, so unpickling a file in full runs whatever
it names. Every PyTorch file is read with ``torch.load(weights_only=True)`` (tensors, plain containers
and numbers only; i2p's own checkpoints hold nothing else, older ones a NumPy RNG state, allowed by
name), and the pickled dataset files of other projects (Point-BERT's few-shot episodes, ModelNet40's
``*_8192pts_fps.dat`` caches) through an unpickler that resolves NumPy's array and scalar types and
nothing else. A file that asks for anything more is refused with the global it asked for.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from pipeline.core.errors import UnsafeFile

# module → names an unpickler may resolve: NumPy arrays, dtypes and scalars (both spellings of NumPy's core)
ALLOWED = {
    "numpy": {"ndarray", "dtype"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "collections": {"OrderedDict"},
}


def _allowed(module: str, name: str) -> bool:
    return name in ALLOWED.get(module, ()) or (module == "numpy.dtypes" and name.endswith("DType"))


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if _allowed(module, name):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def load_pickle(path: Path, what: str) -> Any:
    """The object pickled in ``path`` (arrays, dtypes, NumPy scalars, lists, tuples, dicts, numbers,
    strings). Raises :class:`UnsafeFile` naming the refused global when the file asks for anything else;
    ``what`` names the file's kind in the message (e.g. "few-shot episode")."""
    with open(path, "rb") as f:
        try:
            return _AllowListUnpickler(f).load()
        except pickle.UnpicklingError as err:
            if "is not allowed" not in str(err):
                raise
            raise UnsafeFile(
                f"{what} {path} asks to run code while it is read ({err}); i2p reads only arrays, "
                "numbers, strings and plain containers from pickled files",
                "do not use this file: it is not the published release (download it again from its source)",
            ) from None


def _numpy_globals() -> list[Any]:
    """What an older i2p checkpoint's NumPy RNG state (a uint32 array) needs under weights_only."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    dtype = type(np.dtype(np.uint32))
    # NumPy 1 wrote the reconstructor as numpy.core.multiarray._reconstruct: allowed by that name too
    return [_reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, dtype]


def torch_load(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors, plain containers, numbers, strings, and NumPy
    arrays of older i2p checkpoints. A file holding anything else raises ``pickle.UnpicklingError`` (torch's
    message names the global)."""
    import torch

    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(path, map_location=map_location, weights_only=True)
