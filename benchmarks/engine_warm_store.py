"""Warm store: an epoch whose synthetic samples are all on disk costs what plain loading does.

The store is filled once with the samples of ``--epochs`` epochs (plus one, which the
thread engine starts generating ahead); then consecutive epochs of
``GenerativeLoader(..., store=folder)`` (real batches plus synthetic samples read back
from disk, the generator never called) are timed against a plain ``DataLoader`` over
an in-memory dataset delivering the same number of samples in batches of the same size.
Medians over the epochs. Goal: at most 1.05 x the plain loader. ``--step-ms`` adds a
simulated training step (a sleep, as a GPU step would leave the CPU) to both.

    python benchmarks/engine_warm_store.py [--step-ms 5]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from engine_common import NoiseGenerator, parser, real_loader, timed, write_json
from gdaload import GenerativeLoader
from gdaload.engine import SampleStore


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--real", type=int, default=4096, help="real samples per epoch")
    p.add_argument("--batch-size", type=int, default=64, help="real samples per batch")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--step-ms", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dir", type=Path, default=None, help="store folder (default: a temp dir)")
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
        for _ in range(args.epochs + 1):
            consume(fill)
        fill_seconds = time.perf_counter() - start
        results = {"plain_seconds": timed(lambda: consume(plain), args.epochs)}
        for engine in ("sync", "thread"):
            store = SampleStore.for_generator(folder, generator)
            loader = GenerativeLoader(real, generator, ratio=args.ratio, store=store, engine=engine)
            with loader:
                results[f"{engine}_seconds"] = statistics.median(
                    timed(lambda: consume(loader)) for _ in range(args.epochs))
            stats = loader.stats()
            assert stats["generated"] == 0 and stats["cache_misses"] == 0, stats
            ratio = results[f"{engine}_seconds"] / results["plain_seconds"]
            results[f"{engine}_over_plain"] = ratio
        shard_bytes = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    record = {"real": args.real, "synthetic": synthetic_total, "batch": total_batch,
              "step_ms": args.step_ms, "threads": args.threads, "fill_seconds": fill_seconds,
              "store_bytes": shard_bytes, **results, "goal_over_plain": 1.05}
    print(f"plain {results['plain_seconds']:.3f}s  warm store: sync {results['sync_seconds']:.3f}s "
          f"({results['sync_over_plain']:.2f} x plain), thread {results['thread_seconds']:.3f}s "
          f"({results['thread_over_plain']:.2f} x plain); goal <= 1.05 "
          f"[{len(x)} samples/epoch, batch {total_batch}, step {args.step_ms} ms]")
    write_json(f"warm_store-step{args.step_ms:g}ms", record, args.out)


if __name__ == "__main__":
    main()
