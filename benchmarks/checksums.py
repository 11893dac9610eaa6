"""What per-chunk checksums cost: reads of one object (the training loader's) and writes, per codec chain.

    python benchmarks/checksums.py                # 128 objects, 4 rounds
    python benchmarks/checksums.py --objects 64 --rounds 6

Three arrays at the paper's sizes, written as ``per_object`` writes them (shards of 16 one-object
chunks) with the same values under each inner codec chain:

* ``points`` (O, 8192, 3) float32 and ``image`` (O, 3, 224, 224) float16 (depth views: mostly
  background), zstd-compressed;
* ``feature`` (O, 3, 512, 14, 14) float16, uncompressed (CLIP features do not compress: 1.09×).

Chains: ``none`` (stores before checksums), ``crc32c`` (a crc32c codec after zstd: what new stores
get, ``pipeline.storage.shards.checksummed_codecs``), ``zstd-checksum`` (zstd's own xxhash64 frame
checksum; an uncompressed array still needs ``crc32c``). Timed from the page cache (every file is read
once before timing), rounds interleaved so that the chains share the machine's noise:
``ArrayReader.get`` of every object in a shuffled order (objects/s and µs per object, checks
included), zarr-python reads of every object, and the write of the whole array. Ratios are against
``none`` in the same run; the load average is printed (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ARRAYS = {  # name: (row shape, dtype, compressed)
    "points": ((8192, 3), "float32", True),
    "image": ((3, 224, 224), "float16", True),
    "feature": ((3, 512, 14, 14), "float16", False),
}
CHAINS = ("none", "crc32c", "zstd-checksum")


def codecs(chain: str, compressed: bool) -> list:
    from zarr.codecs import Crc32cCodec, ZstdCodec

    zstd = [ZstdCodec(level=0, checksum=chain == "zstd-checksum")] if compressed else []
    crc = [Crc32cCodec()] if chain == "crc32c" or (chain == "zstd-checksum" and not compressed) else []
    return zstd + crc


def values(name: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape, dtype, _ = ARRAYS[name]
    if name == "image":  # a depth view: an object's blob on a zero background
        out = np.zeros((n, *shape), dtype)
        out[:, :, 60:160, 60:160] = rng.uniform(0, 1, (n, shape[0], 100, 100))
        return out
    return rng.normal(size=(n, *shape)).astype(dtype)


def write(root: Path, chain: str, data: dict[str, np.ndarray]) -> dict[str, float]:
    """One store per chain; seconds to write each array."""
    import zarr

    group, seconds = zarr.open_group(str(root / f"{chain}.zarr"), mode="w"), {}
    for name, x in data.items():
        shape, dtype, compressed = ARRAYS[name]
        arr = group.create_group("train", overwrite=False) if "train" not in group else group["train"]
        a = arr.create_array(
            name,
            shape=x.shape,
            chunks=(1, *shape),
            shards=(16, *shape),
            dtype=dtype,
            compressors=codecs(chain, compressed),
        )
        t = time.perf_counter()
        a[:] = x
        seconds[name] = time.perf_counter() - t
    return seconds


def read_fast(store: Path, name: str, order: np.ndarray) -> float:
    from pipeline.storage.fastread import ArrayReader

    reader = ArrayReader(store, "train")
    reader.get(name, 0)  # metadata parsed outside the timing
    t = time.perf_counter()
    for i in order:
        reader.get(name, int(i))
    return time.perf_counter() - t


def read_zarr(store: Path, name: str, order: np.ndarray) -> float:
    import zarr

    arr = zarr.open_array(str(store / "train" / name), mode="r")
    t = time.perf_counter()
    for i in order:
        arr[int(i)]
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="i2p-checksums-"))
    try:
        data = {name: values(name, args.objects) for name in ARRAYS}
        writes = {chain: write(root, chain, data) for chain in CHAINS}
        order = np.random.default_rng(1).permutation(args.objects)
        fast = {(c, n): [] for c in CHAINS for n in ARRAYS}
        slow = {(c, n): [] for c in CHAINS for n in ARRAYS}
        for chain in CHAINS:  # warm the page cache
            for name in ARRAYS:
                read_fast(root / f"{chain}.zarr", name, order)
        for _ in range(args.rounds):
            for chain in CHAINS:
                for name in ARRAYS:
                    fast[chain, name].append(read_fast(root / f"{chain}.zarr", name, order))
                    slow[chain, name].append(read_zarr(root / f"{chain}.zarr", name, order))
        print(f"{args.objects} objects, {args.rounds} rounds, {os.cpu_count()} CPUs, load {os.getloadavg()}")
        print(f"{'array':8} {'chain':14} {'fastread obj/s':>15} {'µs/obj':>8} {'ratio':>6} "
              f"{'zarr obj/s':>11} {'ratio':>6} {'write s':>8} {'ratio':>6} {'bytes':>10}")  # fmt: skip
        for name in ARRAYS:
            for chain in CHAINS:
                f, z = min(fast[chain, name]), min(slow[chain, name])
                f0, z0 = min(fast["none", name]), min(slow["none", name])
                w, w0 = writes[chain][name], writes["none"][name]
                size = sum(p.stat().st_size for p in (root / f"{chain}.zarr" / "train" / name).rglob("*"))
                print(
                    f"{name:8} {chain:14} {args.objects / f:15.0f} {1e6 * f / args.objects:8.1f} {f0 / f:6.2f} "
                    f"{args.objects / z:11.0f} {z0 / z:6.2f} {w:8.3f} {w0 / w:6.2f} {size:10d}"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
