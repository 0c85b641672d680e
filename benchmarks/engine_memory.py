"""Memory: resident memory stays flat over 10 epochs with a bounded pool.

The thread engine generates 32x32 RGB samples into a pool of ``--pool-size`` while a
loop consumes them, with and without an on-disk store (whose decoded-shard cache is
bounded too). Resident memory (psutil) is sampled after every epoch; the growth
between the first and the last epoch should be near zero.

    python benchmarks/engine_memory.py [--epochs 10]
"""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import psutil
import torch
from engine_common import NoiseGenerator, parser, real_loader, write_json

from gdaload import GenerativeLoader
from gdaload.cache import SampleStore


def run(args, store: SampleStore | None) -> list[float]:
    process = psutil.Process()
    loader = GenerativeLoader(
        real_loader(args.real, args.batch_size),
        NoiseGenerator(),
        ratio=args.ratio,
        engine="thread",
        pool_size=args.pool_size,
        store=store,
    )
    rss = []
    with loader:
        for _ in range(args.epochs):
            for x, _ in loader:
                x.mean()
            gc.collect()
            rss.append(process.memory_info().rss / 2**20)
    return rss


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--real", type=int, default=4096)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--ratio", type=float, default=1.0)
    p.add_argument("--pool-size", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    record = {
        "epochs": args.epochs,
        "synthetic_per_epoch": round(args.ratio * args.real),
        "pool_size": args.pool_size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        bounded = SampleStore.for_generator(Path(tmp), NoiseGenerator(), cache_bytes=32 << 20)
        stores = {"no_store": None, "store": bounded}
        for name, store in stores.items():
            rss = run(args, store)
            record[name] = {
                "rss_mib": rss,
                "growth_mib": rss[-1] - rss[0],
                "spread_mib": max(rss) - min(rss),
            }
            print(
                f"{name:9s} RSS per epoch (MiB): {' '.join(f'{v:.0f}' for v in rss)}  "
                f"growth first->last {rss[-1] - rss[0]:+.1f} MiB"
            )
    write_json("memory", record, args.out)


if __name__ == "__main__":
    main()
