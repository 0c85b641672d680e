"""Store throughput: samples per second written to and read from a ``SampleStore``.

32x32 RGB float32 samples (12 KiB each) in shards of ``--shard`` samples. Reads use a
fresh store (index rebuilt from the shard headers, no decoded shard cached), in shard
order and in random order, in batches of ``--batch``; every shard read is verified
against its checksum. The files were just written, so they are likely in the OS page
cache: this measures gdaload's overhead, not the disk.

    python benchmarks/engine_store_throughput.py [--samples 20000]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from engine_common import NoiseGenerator, parser, write_json

from gdaload.cache import SampleStore


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--shard", type=int, default=256, help="samples per shard (per put)")
    p.add_argument("--batch", type=int, default=64, help="samples per get")
    p.add_argument("--dir", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    generator = NoiseGenerator()
    images = torch.rand(args.shard, *generator.image_shape)  # content does not matter here
    labels = np.arange(args.samples) % generator.num_classes
    seeds = np.arange(args.samples) + 10**9
    record = {
        "samples": args.samples,
        "shard": args.shard,
        "batch": args.batch,
        "sample_bytes": images[0].numel() * 4,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        store = SampleStore.for_generator(folder, generator)
        start = time.perf_counter()
        for i in range(0, args.samples, args.shard):
            n = min(args.shard, args.samples - i)
            store.put(labels[i : i + n].tolist(), seeds[i : i + n].tolist(), images[:n])
        record["write_per_second"] = args.samples / (time.perf_counter() - start)
        for order in ("sequential", "random"):
            index = np.arange(args.samples)
            if order == "random":
                np.random.default_rng(0).shuffle(index)
            start = time.perf_counter()
            fresh = SampleStore.for_generator(folder, generator)
            record["open_seconds"] = time.perf_counter() - start
            if order == "random":
                # Random access touches every shard per few batches: give the decoded-shard
                # cache room for the whole store, as a training run would.
                fresh.cache_bytes = 2 * args.samples * record["sample_bytes"]
            start = time.perf_counter()
            for i in range(0, args.samples, args.batch):
                rows = index[i : i + args.batch]
                got = fresh.get(labels[rows].tolist(), seeds[rows].tolist())
                batch = torch.stack(got)  # type: ignore[arg-type]
            record[f"read_{order}_per_second"] = args.samples / (time.perf_counter() - start)
            assert batch.shape[1:] == images.shape[1:] and fresh.stats()["misses"] == 0
        record["store_bytes"] = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    print(
        f"{args.samples} samples of 3x32x32 float32, shards of {args.shard}: write "
        f"{record['write_per_second']:.0f}/s, read sequential "
        f"{record['read_sequential_per_second']:.0f}/s, random "
        f"{record['read_random_per_second']:.0f}/s (batches of {args.batch}), "
        f"open {record['open_seconds']:.3f}s"
    )
    write_json("store_throughput", record, args.out)


if __name__ == "__main__":
    main()
