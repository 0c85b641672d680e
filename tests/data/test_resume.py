"""Resuming GenerativeLoader and GenerativeDataset mid-epoch, and the versioned state."""

import json

import pytest
import torch
from checkers import SeedImageGenerator
from resume_checkers import assert_same, dataset, plain, stateful, take_epoch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from gdaload import GenerativeDataset, GenerativeLoader
from gdaload.data.resume import STATE_VERSION, LoaderPosition


def wrap(loader, engine: str = "sync", ratio: float = 1.3) -> GenerativeLoader:
    labels = None if hasattr(loader, "dataset") else dataset().tensors[1].tolist()
    return GenerativeLoader(
        loader,
        SeedImageGenerator(num_classes=3),
        ratio=ratio,
        seed=4,
        return_mask=True,
        engine=engine,
        labels=labels,
        pool_size=8,
        generation_batch_size=4,
    )


@pytest.mark.parametrize("engine", ["sync", "thread"])
@pytest.mark.parametrize("stop", [1, 3, 5])
def test_plain_loader_resumes_the_exact_rest_of_the_epoch(engine: str, stop: int) -> None:
    with wrap(plain(), engine) as reference:
        first, _ = take_epoch(reference)
        second, _ = take_epoch(reference)
    with wrap(plain(), engine) as interrupted:
        take_epoch(interrupted)
        _, state = take_epoch(interrupted, stop)
    state = json.loads(json.dumps(state))  # as a checkpoint file keeps it
    assert state["epoch"] == 1 and state["position"]["batches"] == stop
    with wrap(plain(), engine) as resumed:
        resumed.load_state_dict(state)
        resumed.set_epoch(1)  # what the usual loop does first: keeps the position
        rest, _ = take_epoch(resumed)
        following, _ = take_epoch(resumed)
        assert resumed.epoch == 3
    assert_same(rest, second[stop:])
    assert following[0][0].shape[0] > 0
    with wrap(plain(), engine) as reference_next:
        reference_next.set_epoch(2)
        assert_same(following, take_epoch(reference_next)[0])


@pytest.mark.parametrize("engine", ["sync", "thread"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_stateful_dataloader_state_is_saved_and_restored(engine: str, num_workers: int) -> None:
    with wrap(stateful(0, num_workers), engine) as reference:
        full, _ = take_epoch(reference)
    with wrap(stateful(0, num_workers), engine) as interrupted:
        _, state = take_epoch(interrupted, 2)
    assert "loader" in state
    # Another shuffle seed: only the restored loader state can give the saved order.
    with wrap(stateful(99, num_workers), engine) as resumed:
        resumed.load_state_dict(state)
        rest, _ = take_epoch(resumed)
    assert_same(rest, full[2:])


def test_state_after_a_full_epoch_is_the_start_of_the_next() -> None:
    loader = wrap(plain())
    take_epoch(loader)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["position"] == LoaderPosition(1).as_dict()
    resumed = wrap(plain())
    resumed.load_state_dict(state)
    assert_same(take_epoch(resumed)[0], take_epoch(loader)[0])


def test_state_round_trips_before_iterating() -> None:
    loader = wrap(plain())
    _, state = take_epoch(loader, 2)
    resumed = wrap(plain())
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state


def test_set_epoch_to_another_epoch_drops_a_restored_position() -> None:
    loader = wrap(plain())
    _, state = take_epoch(loader, 2)
    resumed = wrap(plain())
    resumed.load_state_dict(state)
    resumed.set_epoch(3)
    reference = wrap(plain())
    reference.set_epoch(3)
    assert_same(take_epoch(resumed)[0], take_epoch(reference)[0])


def test_a_loop_left_early_restarts_its_epoch_unless_resumed() -> None:
    loader = wrap(plain())
    _, state = take_epoch(loader, 2)
    assert state["position"]["batches"] == 2
    assert len(take_epoch(loader)[0]) == 5  # iterating again replays epoch 0 whole


@pytest.mark.reliability
def test_a_changed_iterable_is_reported_not_misaligned() -> None:
    batches = [(x, y) for x, y in plain()]
    loader = wrap(batches)
    _, state = take_epoch(loader, 2)
    rebatched = [(x[:3], y[:3]) for x, y in batches]
    resumed = wrap(rebatched)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match="wrapped loader changed"):
        take_epoch(resumed)
    resumed_same = wrap(batches)
    resumed_same.load_state_dict(state)
    assert len(take_epoch(resumed_same)[0]) == len(batches) - 2


@pytest.mark.reliability
def test_a_stateful_state_resumed_on_a_plain_loader_warns_and_skips() -> None:
    _, state = take_epoch(wrap(stateful(0)), 2)
    plain_resumed = wrap(DataLoader(dataset(), batch_size=5))
    with pytest.warns(UserWarning, match="cannot load one"):
        plain_resumed.load_state_dict(state)
    assert len(take_epoch(plain_resumed)[0]) == 3


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [
        ([1, 2], TypeError, "expects the dict"),
        ({"version": 99, "epoch": 0, "seed": 0}, ValueError, "version 99"),
        ({"epoch": 0}, ValueError, "version None"),
        (
            {"version": STATE_VERSION, "kind": "GenerativeDataset", "epoch": 0, "seed": 0},
            ValueError,
            "saved by 'GenerativeDataset'",
        ),
        ({"version": STATE_VERSION, "kind": "GenerativeLoader", "seed": 0}, ValueError, "epoch"),
    ],
)
@pytest.mark.reliability
def test_bad_states_are_refused_with_the_reason(state, error, match) -> None:
    with pytest.raises(error, match=match):
        wrap(plain()).load_state_dict(state)


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ({"batches": 1, "real": 5}, "exactly"),
        ({"batches": -1, "real": 5, "synthetic": 6}, "batches=-1"),
        ({"batches": 1, "real": 5.0, "synthetic": 6}, "real=5.0"),
    ],
)
@pytest.mark.reliability
def test_bad_positions_are_refused(counts, match) -> None:
    _, state = take_epoch(wrap(plain()), 1)
    with pytest.raises(ValueError, match=match):
        wrap(plain()).load_state_dict({**state, "position": counts})


@pytest.mark.reliability
def test_a_mid_epoch_state_needs_the_same_plan_settings() -> None:
    _, state = take_epoch(wrap(plain(), ratio=1.3), 2)
    with pytest.raises(ValueError, match=r"ratio=1.3 but this GenerativeLoader has ratio=0.5"):
        wrap(plain(), ratio=0.5).load_state_dict(state)
    boundary = wrap(plain(), ratio=1.3).state_dict()
    wrap(plain(), ratio=0.5).load_state_dict(boundary)  # an epoch boundary is fine


@pytest.mark.reliability
def test_a_mid_epoch_state_needs_the_same_world_size() -> None:
    from torch.utils.data import DistributedSampler

    def distributed(world: int) -> GenerativeLoader:
        sampler = DistributedSampler(dataset(), num_replicas=world, rank=0, shuffle=False)
        real = DataLoader(dataset(), batch_size=5, sampler=sampler)
        return GenerativeLoader(real, SeedImageGenerator(), ratio=1.0)

    _, state = take_epoch(distributed(2), 1)
    with pytest.raises(ValueError, match="world=2 but this GenerativeLoader has world=3"):
        distributed(3).load_state_dict(state)
    distributed(3).load_state_dict(distributed(2).state_dict())  # at an epoch boundary


def test_a_version_1_state_loads_as_the_start_of_its_epoch() -> None:
    loader = wrap(plain())
    loader.load_state_dict({"epoch": 2, "seed": 4})
    reference = wrap(plain())
    reference.set_epoch(2)
    assert_same(take_epoch(loader)[0], take_epoch(reference)[0])


def test_generative_dataset_resumes_mid_epoch_under_a_stateful_dataloader() -> None:
    def make(seed: int) -> tuple[GenerativeDataset, StatefulDataLoader]:
        ds = GenerativeDataset(dataset(), SeedImageGenerator(num_classes=3), ratio=1.0, seed=2)
        ds.set_epoch(1)
        gen = torch.Generator().manual_seed(seed)
        return ds, StatefulDataLoader(ds, batch_size=6, shuffle=True, generator=gen)

    ds, loader = make(0)
    full = list(loader)
    ds, loader = make(0)
    iterator = iter(loader)
    for _ in range(3):
        next(iterator)
    state = {"data": ds.state_dict(), "loader": loader.state_dict()}
    ds, loader = make(7)
    ds.set_epoch(0)
    ds.load_state_dict(state["data"])
    loader.load_state_dict(state["loader"])
    rest = list(loader)
    assert len(rest) == len(full) - 3
    for (x, y), (ex, ey) in zip(rest, full[3:], strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)


@pytest.mark.reliability
def test_dataset_state_is_versioned_and_refuses_a_loader_state() -> None:
    ds = GenerativeDataset(dataset(), SeedImageGenerator(num_classes=3), ratio=1.0)
    state = ds.state_dict()
    assert state["version"] == STATE_VERSION and state["kind"] == "GenerativeDataset"
    _, loader_state = take_epoch(wrap(plain()), 1)
    with pytest.raises(ValueError, match="saved by 'GenerativeLoader'"):
        ds.load_state_dict(loader_state)


def test_an_accelerate_prepared_loader_resumes_by_skipping_at_the_sampler() -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    reference, _ = take_epoch(wrap(accelerator.prepare(plain())))
    _, state = take_epoch(wrap(accelerator.prepare(plain())), 3)
    resumed = wrap(accelerator.prepare(plain()))
    resumed.load_state_dict(state)
    assert_same(take_epoch(resumed)[0], reference[3:])


@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_an_accelerate_prepared_stateful_loader_keeps_its_own_state(engine: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    config = DataLoaderConfiguration(use_stateful_dataloader=True)
    accelerator = Accelerator(cpu=True, dataloader_config=config)
    reference, _ = take_epoch(wrap(accelerator.prepare(stateful(0)), engine))
    _, state = take_epoch(wrap(accelerator.prepare(stateful(0)), engine), 2)
    assert "loader" in state
    resumed = wrap(accelerator.prepare(stateful(5)), engine)
    resumed.load_state_dict(state)
    assert_same(take_epoch(resumed)[0], reference[2:])


KILLED_RUN = """
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from safetensors.torch import save_file
from test_resume import plain, wrap

engine, folder, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
state_file = folder / "loader.json"
loader = wrap(plain(), engine)
if state_file.exists():
    loader.load_state_dict(json.loads(state_file.read_text()))
while loader.epoch < 2:
    for x, y, mask in loader:
        n = len(list(folder.glob("batch-*.safetensors")))
        save_file({{"x": x, "y": y, "mask": mask}}, str(folder / f"batch-{{n:03d}}.safetensors"))
        # Checkpoint the way a training loop does: write, then rename (atomic).
        state_file.with_suffix(".tmp").write_text(json.dumps(loader.state_dict()))
        state_file.with_suffix(".tmp").replace(state_file)
        if n + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally, no atexit
"""


@pytest.mark.reliability
@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_a_killed_run_resumed_from_its_last_state_serves_the_uninterrupted_stream(
    tmp_path, engine: str
) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = KILLED_RUN.format(tests=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(kill_at: int) -> int:
        command = [sys.executable, "-c", script, engine, str(tmp_path), str(kill_at)]
        return subprocess.run(command, env=env, timeout=300, capture_output=True).returncode

    assert run(kill_at=7) == -9  # killed in epoch 1, after its second batch
    assert run(kill_at=0) == 0  # resumed to the end of epoch 1
    from safetensors.torch import load_file

    got = [load_file(path) for path in sorted(tmp_path.glob("batch-*.safetensors"))]
    with wrap(plain(), engine) as reference:
        expected = take_epoch(reference)[0] + take_epoch(reference)[0]
    assert_same([(b["x"], b["y"], b["mask"]) for b in got], expected)
