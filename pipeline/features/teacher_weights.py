"""A teacher's weight files: finding a pretrained tag's file in the Hugging Face cache (or downloading
it), loading a local checkpoint, and the sha256 of a file's bytes (part of the features fingerprint).

torch and open_clip are imported inside the functions (``i2p status`` hashes --weights without them).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

from pipeline.core.errors import TeacherError

WEIGHTS_HINT = (
    "pass --weights PATH (a .safetensors, .bin or .pt checkpoint of {model}; OpenAI TorchScript .pt "
    "files are accepted), or run once online so open_clip downloads them into the Hugging Face cache "
    "(HF_HUB_CACHE, or HF_HOME/hub; default ~/.cache/huggingface/hub){repo}"
)


def fetch_weights(
    open_clip: Any, name: str, model_name: str, tag: str, pcfg: dict, cache_dir: str | None, offline: bool
) -> str:
    """Path of the pretrained tag's weight file: from the cache, downloading it unless offline."""
    hub = pcfg.get("hf_hub", "")
    repo = f"; the file comes from the Hugging Face repo {hub.rstrip('/')}" if hub else ""
    hint = WEIGHTS_HINT.format(model=model_name, repo=repo)
    if offline:
        path = _cached_weights(open_clip, pcfg, cache_dir)
        if path is None:
            where = cache_dir or "the default Hugging Face cache"
            raise TeacherError(
                f"weights of teacher {name} ({model_name}, pretrained {tag!r}) are not in {where} "
                "and downloads are off (offline mode, HF_HUB_OFFLINE=1)",
                hint,
            )
        return path
    try:
        path = open_clip.pretrained.download_pretrained(pcfg, cache_dir=cache_dir)
    except Exception as err:  # network, hub or disk: all mean "cannot get the weights"
        raise TeacherError(
            f"cannot download the weights of teacher {name} ({model_name}, pretrained {tag!r}): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
            hint,
        ) from err
    if not path:
        raise TeacherError(f"open_clip gives no download for {model_name}/{tag} (teacher {name})", hint)
    return path


def _cached_weights(open_clip: Any, pcfg: dict, cache_dir: str | None) -> str | None:
    """The weight file of a pretrained config if it is already cached locally, else None."""
    hub = pcfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(hub)
        if not filename:
            names = [open_clip.constants.HF_SAFE_WEIGHTS_NAME, open_clip.constants.HF_WEIGHTS_NAME]
        elif filename.endswith((".bin", ".pth")):
            names = [filename[:-4] + ".safetensors", filename]
        else:
            names = [filename]
        for filename in names:
            try:
                return hf_hub_download(repo, filename, cache_dir=cache_dir, local_files_only=True)
            except Exception:  # not cached (LocalEntryNotFoundError and friends)
                continue
    url = pcfg.get("url", "")
    if url:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def load_weights(open_clip: Any, model: Any, path: str, name: str, model_name: str) -> None:
    """Load a checkpoint strictly, with ``weights_only=True``; TorchScript archives (OpenAI .pt) through
    torch.jit.load (torch.load's own dispatch, which needs ``weights_only=False`` to take it)."""
    from pipeline.storage.checkpoint_files import CheckpointError, check_signature

    try:
        check_signature(Path(path), "a weights file (.safetensors, .bin, .pt)")
    except CheckpointError as err:
        raise TeacherError(err.message, err.hint) from None
    weights_only = not _is_torchscript(path)
    try:
        open_clip.load_checkpoint(model, path, strict=True, weights_only=weights_only)
    except Exception as err:
        other = _other_architecture(model, path) if weights_only else None
        if other:
            raise TeacherError(
                f"weights {path} are of another model than {model_name} (teacher {name}): {other}",
                f"pass the weights of open_clip model {model_name}, or the teacher those weights belong to",
            ) from None
        detail = " ".join(str(err).split())[:400]
        raise TeacherError(
            f"cannot load weights {path} into {model_name} (teacher {name}): {type(err).__name__}: {detail}",
            f"the checkpoint must be a state dict of open_clip model {model_name} (.safetensors, .bin, .pt) "
            "or an OpenAI TorchScript .pt",
        ) from err


def _other_architecture(model: Any, path: str) -> str | None:
    """ "<key> is <shape> in the file, <shape> for the model" for the first tensor whose shape differs (or a
    missing key), read with safetensors or weights_only; None when the shapes agree or the file cannot say."""
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, "pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        else:
            from pipeline.storage.safe_load import torch_load

            state = torch_load(Path(path))
            state = state.get("state_dict", state) if isinstance(state, dict) else {}
            shapes = {
                k.removeprefix("module."): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")
            }
    except Exception:
        return None
    for key, tensor in model.state_dict().items():
        if key not in shapes:
            return f"{key} is missing from the file ({len(shapes)} tensors in it)"
        if shapes[key] != tuple(tensor.shape):
            return f"{key} is {shapes[key]} in the file, {tuple(tensor.shape)} for the model"
    return None


def _is_torchscript(path: str) -> bool:
    """True for a TorchScript archive, such as OpenAI's CLIP .pt files, recognised as torch recognises one:
    a ``constants.pkl`` record at the top of the archive (``<archive>/constants.pkl``), not anywhere in it.
    torch.load dispatches such a file to torch.jit.load, whose unpickler resolves TorchScript types only."""
    with open(path, "rb") as f:
        if (
            f.read(4) != b"PK\x03\x04"
        ):  # torch reads a zip only from the file's start; zipfile finds one anywhere
            return False
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(entry.count("/") == 1 and entry.endswith("/constants.pkl") for entry in archive.namelist())


def weights_sha256(path: str) -> str:
    """sha256 of a weight file's contents (in the features fingerprint: same path, new file → new store).

    Raises TeacherError when the file is missing. The digest is remembered per (path, size, mtime) in
    memory, so planning and status hash a file once per process."""
    try:
        stat = os.stat(path)
    except OSError:
        raise TeacherError(
            f"--weights file {path} does not exist",
            "pass the path of a local teacher checkpoint (.bin, .safetensors, .pt), or drop --weights",
        ) from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


_SHA256: dict[tuple[str, int, int], str] = {}
