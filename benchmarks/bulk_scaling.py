"""Bulk generation with 1 vs N processes: `gdaload generate` under torchrun.

The same job (the quickstart's plan: shipped digits generator, DPM-Solver++ 10 steps,
ratio 2 over the 100 real images, epochs 0..E-1) is generated into a fresh store by 1
process and by N processes, in alternating rounds, and the wall times are compared as
a ratio measured in this run. Each process is pinned to one thread, so N processes use
N cores. Writes JSON to benchmarks/results/bulk_scaling.json.

Run: OMP_NUM_THREADS=1 python benchmarks/bulk_scaling.py --processes 2 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def run_job(processes: int, epochs: int, batch_size: int, folder: Path) -> dict:
    """One `gdaload generate` job; its wall time and each process's report."""
    summary = str(folder / "rank{rank}.json")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
        "--master_port", str(29700 + os.getpid() % 500), "-m", "gdaload.cli", "generate",
        "--store", str(folder / "store"), "--epochs", str(epochs), "--data", "digits",
        "--ratio", "2", "--batch-size", str(batch_size), "--device", "cpu",
        "--json", summary, "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    reports = [json.loads(Path(summary.format(rank=r)).read_text()) for r in range(processes)]
    return {
        "processes": processes,
        "wall_seconds": seconds,
        "generated": sum(r["generated"] for r in reports),
        "generation_seconds": max(r["seconds"] for r in reports),
        "per_process": reports,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the plan to generate")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/bulk_scaling.json")
    args = parser.parse_args()

    runs: dict[int, list[dict]] = {1: [], args.processes: []}
    for _ in range(args.rounds):
        for processes in (1, args.processes):  # alternating: drift hits both alike
            with tempfile.TemporaryDirectory() as tmp:
                runs[processes].append(run_job(processes, args.epochs, args.batch_size, Path(tmp)))
    one, many = runs[1], runs[args.processes]
    # Paired by round: the speed-up of N processes over 1 in the same round.
    pairs = list(zip(one, many, strict=True))
    wall = [a["wall_seconds"] / b["wall_seconds"] for a, b in pairs]
    gen = [a["generation_seconds"] / b["generation_seconds"] for a, b in pairs]
    result = {
        "job": f"digits plan, ratio 2, {args.epochs} epochs, {one[0]['generated']} samples",
        "processes": args.processes,
        "rounds": args.rounds,
        "speedup_wall_median": statistics.median(wall),
        "speedup_wall": wall,
        "speedup_generation_median": statistics.median(gen),
        "speedup_generation": gen,
        "runs": runs,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "note": "CPU only, one thread per process; machine shared with other work",
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"{args.processes} processes vs 1: wall {result['speedup_wall_median']:.2f}x "
        f"(rounds {', '.join(f'{s:.2f}' for s in wall)}), generation "
        f"{result['speedup_generation_median']:.2f}x; {one[0]['generated']} samples per job"
    )


if __name__ == "__main__":
    main()
