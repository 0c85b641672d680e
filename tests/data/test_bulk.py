"""Bulk generation into a store, split across processes, and reading it back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checkers import SeedImageGenerator
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeDataset, GenerativeLoader, fill_store
from gdaload.data.bulk import process_rank_world


def real(n: int = 30) -> TensorDataset:
    return TensorDataset(torch.zeros(n, 1, 4, 4), torch.tensor([i % 3 for i in range(n)]))


def dataset(folder: Path, refresh: float = 1.0) -> GenerativeDataset:
    return GenerativeDataset(
        real(), SeedImageGenerator(num_classes=3), ratio=1.5, seed=3, store=folder, refresh=refresh
    )


def train_hits(folder: Path, epochs: int, refresh: float = 1.0) -> dict[str, float]:
    loader = GenerativeLoader(
        DataLoader(real(), batch_size=7, shuffle=True),
        SeedImageGenerator(num_classes=3),
        ratio=1.5,
        seed=3,
        store=folder,
        refresh=refresh,
    )
    for _ in range(epochs):
        list(loader)
    return loader.stats()


@pytest.mark.parametrize("refresh", [1.0, 0.25])
def test_two_processes_generate_each_sample_once_and_training_only_reads(
    tmp_path: Path, refresh: float
) -> None:
    reports = [
        fill_store(dataset(tmp_path, refresh), range(4), batch_size=8, rank=r, world=2)
        for r in range(2)
    ]
    planned = reports[0].planned
    assert sum(r.assigned for r in reports) == sum(r.generated for r in reports) == planned
    if refresh == 1.0:
        assert planned == 4 * 45
    else:  # epoch 0 whole, then about a quarter of the positions per epoch
        assert 45 + 3 * 10 <= planned <= 45 + 3 * 13
    assert abs(reports[0].assigned - reports[1].assigned) <= 8  # one block apart at most
    stats = train_hits(tmp_path, 4, refresh)
    assert stats["generated"] == 0 and stats["cache_misses"] == 0  # 100% hits


@pytest.mark.reliability
def test_a_rerun_skips_what_is_stored_and_completes_a_dead_ranks_share(tmp_path: Path) -> None:
    first = fill_store(dataset(tmp_path), range(2), batch_size=8, rank=0, world=2)
    # Rank 1 died before writing anything; the job is run again on one process.
    rerun = fill_store(dataset(tmp_path), range(2), batch_size=8, rank=0, world=1)
    assert rerun.skipped == first.generated
    assert rerun.generated == first.planned - first.generated
    again = fill_store(dataset(tmp_path), range(2), batch_size=8, rank=0, world=1)
    assert again.generated == 0 and again.skipped == again.planned


def test_rank_and_world_come_from_the_launcher_environment(monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert process_rank_world() == (1, 4)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4 is not a rank of WORLD_SIZE=4"):
        process_rank_world()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="must be integers"):
        process_rank_world()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    no_store = GenerativeDataset(real(), SeedImageGenerator(num_classes=3))
    with pytest.raises(ValueError, match="needs a store"):
        fill_store(no_store, [0])
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        fill_store(dataset(tmp_path), [-1])
    with pytest.raises(ValueError, match="rank 2 is not a rank"):
        fill_store(dataset(tmp_path), [0], rank=2, world=2)
    with pytest.raises(ValueError, match="batch_size"):
        fill_store(dataset(tmp_path), [0], batch_size=0)


def test_gdaload_generate_under_torchrun_splits_the_work(
    tmp_path: Path, class_pipeline_dir: Path
) -> None:
    images = tmp_path / "images"
    for label in range(3):
        (images / f"class{label}").mkdir(parents=True)
        for i in range(4):
            pixels = np.full((8, 8, 3), 40 * label + i, dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"class{label}" / f"{i}.png")
    store, summary = tmp_path / "store", str(tmp_path / "rank{rank}.json")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(29600 + os.getpid() % 1000), "-m", "gdaload.cli", "generate",
        "--store", str(store), "--epochs", "0:3", "--data", str(images), "--ratio", "1",
        "--generator", str(class_pipeline_dir), "--sampler", "ddim", "--steps", "2",
        "--batch-size", "4", "--device", "cpu", "--json", summary, "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0/2" in done.stdout and "rank 1/2" in done.stdout
    reports = [json.loads(Path(summary.format(rank=r)).read_text()) for r in range(2)]
    assert sum(r["generated"] for r in reports) == reports[0]["planned"] == 3 * 12
    assert min(r["generated"] for r in reports) > 0  # both processes worked
    # Every sample of those epochs is now stored: filling again generates nothing.
    from gdaload import DiffusionGenerator
    from gdaload.datasets.folder import ClassImageFolder

    generator = DiffusionGenerator.from_pretrained(class_pipeline_dir, sampler="ddim", steps=2)
    again = GenerativeDataset(ClassImageFolder(images), generator, ratio=1.0, store=store)
    assert again.fill_store(range(3), progress=False) == 0


@pytest.mark.reliability
def test_a_store_filled_under_another_plan_is_not_served_for_this_one(tmp_path: Path) -> None:
    other = GenerativeDataset(
        real(), SeedImageGenerator(num_classes=3), ratio=1.5, seed=99, store=tmp_path
    )
    fill_store(other, range(2), rank=0, world=1)
    stats = train_hits(tmp_path, 2)  # seed 3: other seeds, so other keys
    assert stats["cache_hits"] == 0 and stats["generated"] == 2 * 45
    plain = GenerativeLoader(
        DataLoader(real(), batch_size=7), SeedImageGenerator(num_classes=3), ratio=1.5, seed=3
    )
    stored = GenerativeLoader(
        DataLoader(real(), batch_size=7),
        SeedImageGenerator(num_classes=3),
        ratio=1.5,
        seed=3,
        store=tmp_path,
    )
    for (x, y), (sx, sy) in zip(plain, stored, strict=True):
        assert torch.equal(x, sx) and torch.equal(y, sy)
