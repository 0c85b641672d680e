"""Warm store: an epoch whose synthetic samples are all on disk costs what plain loading does.

The store is filled once with the samples of every epoch read (plus one, which the
thread engine starts generating ahead); then epochs of ``GenerativeLoader(...,
store=folder)`` (real batches plus synthetic samples read back from disk, the generator
never called) are timed against a plain ``DataLoader`` over an in-memory dataset
delivering the same number of samples in batches of the same size. After ``--warmup``
untimed epochs of each, the loaders take turns epoch by epoch (plain, sync, thread), so
drift in the machine's speed hits all of them alike; the ratio of each round's epoch
times is reported as median and interquartile range over ``--epochs`` rounds. Goal: at
most 1.05 x the plain loader. ``--step-ms`` adds a simulated training step (a sleep, as a
GPU step would leave the CPU) to every loader. ``--prefetch K`` (default 2; 0 leaves
them out) adds the sync and thread engines with ``prefetch=K``: the next K batches are
merged in a background thread while the step runs.

    python benchmarks/engine_warm_store.py [--step-ms 5] [--prefetch 2]
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path

import torch
from engine_common import NoiseGenerator, parser, real_loader, timed, write_json
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeLoader
from gdaload.cache import SampleStore


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--real", type=int, default=4096, help="real samples per epoch")
    p.add_argument("--batch-size", type=int, default=64, help="real samples per batch")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--step-ms", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=8, help="timed rounds")
    p.add_argument("--warmup", type=int, default=2, help="untimed epochs of each loader first")
    p.add_argument("--dir", type=Path, default=None, help="store folder (default: a temp dir)")
    p.add_argument("--prefetch", type=int, default=2, help="batches merged ahead (0: no arm)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    generator = NoiseGenerator()
    real = real_loader(args.real, args.batch_size)
    synthetic_total = round(args.ratio * args.real)
    total_batch = args.batch_size + round(args.ratio * args.batch_size)
    x = torch.rand(args.real + synthetic_total, 3, 32, 32)
    plain = DataLoader(TensorDataset(x, torch.arange(len(x)) % 10), batch_size=total_batch)

    def consume(batches) -> None:
        for _ in batches:
            if args.step_ms:
                time.sleep(args.step_ms / 1000)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        fill = GenerativeLoader(real, generator, ratio=args.ratio, store=folder)
        start = time.perf_counter()
        for _ in range(args.warmup + args.epochs + 1):
            consume(fill)
        fill_seconds = time.perf_counter() - start
        loaders = {"plain": plain}
        arms = {"sync": ("sync", 0), "thread": ("thread", 0)}
        if args.prefetch:
            arms |= {
                f"sync_prefetch{args.prefetch}": ("sync", args.prefetch),
                f"thread_prefetch{args.prefetch}": ("thread", args.prefetch),
            }
        for name, (engine, prefetch) in arms.items():
            store = SampleStore.for_generator(folder, generator)
            loaders[name] = GenerativeLoader(
                real, generator, ratio=args.ratio, store=store, engine=engine, prefetch=prefetch
            )
        times: dict[str, list[float]] = {name: [] for name in loaders}
        for round_ in range(args.warmup + args.epochs):
            for name, loader in loaders.items():
                seconds = timed(functools.partial(consume, loader))
                if round_ >= args.warmup:
                    times[name].append(seconds)
        for engine in arms:
            loaders[engine].close()
            stats = loaders[engine].stats()
            assert stats["generated"] == 0 and stats["cache_misses"] == 0, stats
        shard_bytes = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    results = {"plain_seconds": statistics.median(times["plain"])}
    for engine in arms:
        ratios = [t / p for t, p in zip(times[engine], times["plain"], strict=True)]
        quartiles = statistics.quantiles(ratios, n=4)
        results[f"{engine}_seconds"] = statistics.median(times[engine])
        results[f"{engine}_over_plain"] = statistics.median(ratios)
        results[f"{engine}_over_plain_iqr"] = [quartiles[0], quartiles[2]]
    record = {
        "real": args.real,
        "synthetic": synthetic_total,
        "batch": total_batch,
        "step_ms": args.step_ms,
        "prefetch": args.prefetch,
        "threads": args.threads,
        "rounds": args.epochs,
        "fill_seconds": fill_seconds,
        "store_bytes": shard_bytes,
        **results,
        "goal_over_plain": 1.05,
    }

    def ratio(engine: str) -> str:
        low, high = results[f"{engine}_over_plain_iqr"]
        return (
            f"{engine} {results[f'{engine}_seconds']:.3f}s ({results[f'{engine}_over_plain']:.3f} "
            f"x plain, IQR {low:.3f}-{high:.3f})"
        )

    print(
        f"plain {results['plain_seconds']:.3f}s  warm store: {', '.join(map(ratio, arms))}; "
        f"goal <= 1.05 "
        f"[{len(x)} samples/epoch, batch {total_batch}, step {args.step_ms} ms]"
    )
    write_json(f"warm_store-step{args.step_ms:g}ms", record, args.out)


if __name__ == "__main__":
    main()
