"""The global synthetic plan under any split of the real data across ranks."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    SequentialSampler,
    TensorDataset,
)

from gdaload import GenerativeLoader
from gdaload.data.policies import synthetic_counts
from gdaload.data.split import RankSplit, rank_split


def dataset(n: int) -> TensorDataset:
    return TensorDataset(torch.zeros(n, 1, 4, 4), torch.tensor([i % 3 for i in range(n)]))


def sampler_loader(n, world, rank, batch, drop_last=False, sampler_drop=False) -> DataLoader:
    ds = dataset(n)
    sampler = DistributedSampler(
        ds, num_replicas=world, rank=rank, shuffle=True, seed=1, drop_last=sampler_drop
    )
    return DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=drop_last)


def accelerate_loader(n, world, rank, batch, drop_last=False, even=True) -> DataLoader:
    from accelerate.data_loader import BatchSamplerShard

    ds = dataset(n)
    base = BatchSampler(SequentialSampler(ds), batch, drop_last)
    return DataLoader(ds, batch_sampler=BatchSamplerShard(base, world, rank, even_batches=even))


def served_indices(loader: GenerativeLoader) -> tuple[list[int], list[int]]:
    """Plan indices and labels of the synthetic samples one epoch of a rank serves."""
    rank, world = loader._rank_world()
    labels: list[int] = []
    for _, y, mask in loader:
        labels += y[mask].tolist()
    return [k * world + rank for k in range(len(labels))], labels


def check_global_plan(loaders: list[GenerativeLoader], total: int) -> None:
    indices, labels = [], {}
    for loader in loaders:
        got, got_labels = served_indices(loader)
        indices += got
        labels.update(zip(got, got_labels, strict=True))
        assert loader.synthetic_class_counts().sum() == len(got)  # the plan, read up front
    assert sorted(indices) == list(range(total))  # each index once, none outside
    plan = loaders[0].spec.synthetic_plan(rank=0, world=1)  # positions = global indices
    assert [labels[j] for j in range(total)] == plan.labels(0, range(total)).tolist()


@pytest.mark.parametrize(
    ("n", "world", "batch", "drop_last", "sampler_drop", "ratio"),
    [
        (23, 2, 5, False, False, 1.0),
        (23, 2, 5, False, False, 0.5),
        (24, 2, 4, False, False, 0.5),
        (25, 3, 4, False, False, 2.5),
        (23, 2, 5, True, False, 1.0),
        (23, 2, 5, False, True, 1.0),
        (7, 4, 3, False, False, 1.5),
    ],
)
def test_distributed_sampler_splits_serve_the_global_plan(
    n, world, batch, drop_last, sampler_drop, ratio
) -> None:
    loaders = [
        GenerativeLoader(
            sampler_loader(n, world, rank, batch, drop_last, sampler_drop),
            SeedImageGenerator(num_classes=3),
            ratio=ratio,
            return_mask=True,
        )
        for rank in range(world)
    ]
    real = rank_split(loaders[0].loader).total
    padded = sum(len(loader.loader.sampler) for loader in loaders)
    if not drop_last and not sampler_drop:
        assert real == n < padded or n % world == 0
    check_global_plan(loaders, loaders[0].spec.synthetic_count(real))


@pytest.mark.parametrize("engine", ["sync", "thread"])
@pytest.mark.parametrize(
    ("n", "world", "batch", "drop_last", "even"),
    [
        (23, 2, 4, False, True),
        (23, 2, 4, True, True),
        (23, 3, 4, False, False),
        (9, 2, 5, False, True),
    ],
)
def test_accelerate_prepared_splits_serve_the_global_plan(
    engine, n, world, batch, drop_last, even
) -> None:
    loaders = [
        GenerativeLoader(
            accelerate_loader(n, world, rank, batch, drop_last, even),
            SeedImageGenerator(num_classes=3),
            ratio=1.0,
            return_mask=True,
            engine=engine,
            pool_size=8,
            generation_batch_size=4,
        )
        for rank in range(world)
    ]
    split = rank_split(loaders[0].loader)
    expected = n if not drop_last else (n // batch) // world * world * batch
    assert split is not None and split.total == expected
    # The thread engine knows where each rank's epoch ends: it does not generate past it.
    assert [loader._expected_synthetic() for loader in loaders] == [
        len(range(rank, expected, world)) for rank in range(world)
    ]
    with loaders[0], loaders[1]:
        check_global_plan(loaders, expected)


def test_class_counts_follow_the_policy_globally() -> None:
    loaders = [
        GenerativeLoader(
            sampler_loader(23, 2, rank, 5),
            SeedImageGenerator(num_classes=3),
            ratio=1.0,
            class_policy="balance",
            return_mask=True,
        )
        for rank in range(2)
    ]
    labels = list(itertools.chain.from_iterable(served_indices(lo)[1] for lo in loaders))
    real_counts = np.bincount([i % 3 for i in range(23)], minlength=3)
    assert np.bincount(labels, minlength=3).tolist() == (
        synthetic_counts("balance", real_counts, 23).tolist()
    )


def test_a_rank_without_real_rows_serves_its_share_with_its_first_batch() -> None:
    split = RankSplit(rank=1, rows=(4, 0))
    assert split.served(2, 0) == 0 and split.served(2, 3) == 2


def test_one_process_has_no_split() -> None:
    assert rank_split(DataLoader(dataset(5), batch_size=2)) is None
    assert rank_split([(torch.zeros(2), torch.zeros(2))]) is None


TORCHRUN_RANK = """
import json, os, sys
sys.path.insert(0, {tests!r})
import torch, torch.distributed as dist
from test_split import sampler_loader, served_indices
from checkers import SeedImageGenerator
from gdaload import GenerativeLoader

engine, out, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if kind == "accelerate":
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from test_split import dataset

    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    real = accelerator.prepare(DataLoader(dataset(n), batch_size=5, shuffle=True))
else:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    real = sampler_loader(n, world, rank, 5)
# Both ranks share one store: the second pass reads what either rank wrote.
with GenerativeLoader(real, SeedImageGenerator(num_classes=3),
                      ratio=1.0, return_mask=True, engine=engine, pool_size=8,
                      generation_batch_size=4, store=os.path.join(out, "store")) as loader:
    loader.set_epoch(0)
    indices, labels = served_indices(loader)
    loader.set_epoch(0)
    again = served_indices(loader)
    stats = loader.stats()
with open(os.path.join(out, f"rank{{rank}}.json"), "w") as f:
    json.dump({{"indices": indices, "labels": labels, "again": list(again), "stats": stats}}, f)
if dist.is_initialized():
    dist.destroy_process_group()
"""


@pytest.mark.parametrize(
    ("engine", "kind", "n"),
    [
        ("sync", "sampler", 23),
        ("thread", "sampler", 24),
        ("sync", "accelerate", 24),
        ("thread", "accelerate", 23),
    ],
)
def test_torchrun_two_processes_serve_the_global_plan_and_share_a_store(
    tmp_path: Path, engine, kind, n
) -> None:
    import json

    script = tmp_path / "rank.py"
    script.write_text(TORCHRUN_RANK.format(tests=str(Path(__file__).parent)))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(29500 + os.getpid() % 1000), str(script), engine, str(tmp_path),
        kind, str(n),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    indices = sorted(ranks[0]["indices"] + ranks[1]["indices"])
    assert indices == list(range(n))  # n real samples, not the padded 24
    for rank in ranks:
        assert rank["again"] == [rank["indices"], rank["labels"]]
        stats = rank["stats"]
        # Once; the replay read the store. The thread engine may also have generated
        # ahead into epoch 1, at most a pool's worth.
        ahead = stats["generated"] - len(rank["indices"])
        assert ahead == 0 if engine == "sync" else 0 <= ahead <= 8
        assert stats["cache_hits"] >= len(rank["indices"])
    assert "Warning" not in done.stderr  # no damaged shard in the shared store
