"""Workloads and helpers shared by the engine benchmarks (not timed tests).

Every benchmark measures its baseline in the same run, prints ratios against it and
writes a JSON record to ``benchmarks/results/engine_<name>.json`` (or to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from gdaload import Generator
from gdaload.generators.base import as_labels, as_seeds

HERE = Path(__file__).resolve().parent


class NoiseGenerator(Generator):
    """Images that are a pure function of (label, seed), plus an optional fixed cost.

    ``cost="sleep"`` sleeps ``seconds`` per call (generation on another device, say);
    ``cost="matmul"`` spends about ``seconds`` per call in CPU matrix products, which
    release the GIL like real model kernels.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_shape: tuple[int, int, int] = (3, 32, 32),
        cost: str = "none",
        seconds: float = 0.0,
        matmul_size: int = 256,
    ) -> None:
        self.num_classes, self.image_shape = num_classes, image_shape
        self.cost, self.seconds, self.matmul_size = cost, seconds, matmul_size
        self._reps = calibrate_matmul(seconds, matmul_size) if cost == "matmul" else 0

    def generate(self, labels: Any, seeds: Sequence[int]) -> torch.Tensor:
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        if self.cost == "sleep":
            time.sleep(self.seconds)
        elif self.cost == "matmul":
            burn_matmul(self._reps, self.matmul_size)
        if not seeds:
            return torch.empty(0, *self.image_shape)
        return torch.stack(
            [
                torch.rand(self.image_shape, generator=torch.Generator().manual_seed(s))
                for s in seeds
            ]
        )

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "noise", "classes": self.num_classes, "shape": list(self.image_shape)}


def burn_matmul(reps: int, size: int, device: str = "cpu") -> None:
    a = torch.ones(size, size, device=device)
    for _ in range(reps):
        a = (a @ a).clamp_(0, 1)
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def calibrate_matmul(seconds: float, size: int, device: str = "cpu") -> int:
    """Matrix products of ``size`` that take about ``seconds`` here."""
    burn_matmul(3, size, device)
    start = time.perf_counter()
    burn_matmul(20, size, device)
    per = (time.perf_counter() - start) / 20
    return max(1, round(seconds / per))


def cpu_parallelism(size: int = 256, reps: int = 200) -> float:
    """How much faster two threads of CPU kernels run than one after the other.

    About 2 on an idle machine with two free cores; about 1 when other work holds all
    but one core, in which case no engine can overlap CPU-bound generation and training.
    """
    import threading

    burn_matmul(20, size)
    serial = timed(lambda: (burn_matmul(reps, size), burn_matmul(reps, size)))

    def both() -> None:
        other = threading.Thread(target=burn_matmul, args=(reps, size))
        other.start()
        burn_matmul(reps, size)
        other.join()

    return serial / timed(both)


def real_loader(
    samples: int,
    batch_size: int,
    image_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(samples, *image_shape, generator=generator)
    y = torch.arange(samples) % num_classes
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def timed(fn: Callable[[], Any], repeats: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=None, help="JSON output path")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: generation and training get a core each)",
    )
    return p


def write_json(name: str, record: dict[str, Any], out: Path | None) -> Path:
    record = {
        "benchmark": name,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },
        **record,
    }
    path = out or HERE / "results" / f"engine_{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return path
