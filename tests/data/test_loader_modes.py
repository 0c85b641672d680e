"""GenerativeLoader's cost levers: partial refresh, replace mode, and the cost counters."""

from collections import Counter

import pytest
import torch
from checkers import SeedImageGenerator
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeDataset, GenerativeLoader


def real(n: int = 24) -> TensorDataset:
    images = (torch.arange(n, dtype=torch.float32) / n).view(n, 1, 1, 1).expand(n, 1, 4, 4)
    return TensorDataset(images.clone(), torch.tensor([i % 3 for i in range(n)]))


def epoch_synthetic(loader: GenerativeLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for x, y, mask in loader:
        xs.append(x[mask])
        ys.append(y[mask])
    return torch.cat(xs), torch.cat(ys)


# ---------------------------------------------------------------- partial refresh
@pytest.mark.parametrize("engine", ["sync", "thread"])
def test_refresh_carries_over_the_rest_and_generates_only_the_fresh(tmp_path, engine) -> None:
    generator = SeedImageGenerator(num_classes=3)
    loader = GenerativeLoader(
        DataLoader(real(60), batch_size=10),
        generator,
        ratio=2.0,
        refresh=0.25,
        store=tmp_path,
        return_mask=True,
        engine=engine,
        pool_size=16,
        generation_batch_size=8,
    )
    with loader:
        x0, y0 = epoch_synthetic(loader)
        x1, y1 = epoch_synthetic(loader)
        stats = loader.stats()
    assert len(x0) == len(x1) == 120
    assert torch.equal(y0, y1)  # labels stay with their positions: class counts exact
    same = (x0 == x1).flatten(1).all(1)
    fresh = int((~same).sum())
    assert 28 <= fresh <= 32  # a quarter fresh
    assert stats["carried_over"] == 120 - fresh
    # Only the fresh ones were generated again; the thread engine may also have
    # generated ahead into epoch 2, at most a pool's worth.
    ahead = stats["generated"] - (120 + fresh)
    assert ahead == 0 if engine == "sync" else 0 <= ahead <= 16


def test_refresh_is_deterministic_and_equal_across_engines(tmp_path) -> None:
    def run(engine: str, folder) -> list[torch.Tensor]:
        loader = GenerativeLoader(
            DataLoader(real(), batch_size=5),
            SeedImageGenerator(num_classes=3),
            ratio=1.0,
            refresh=0.5,
            store=folder,
            return_mask=True,
            engine=engine,
            pool_size=8,
            generation_batch_size=4,
        )
        with loader:
            return [epoch_synthetic(loader)[0] for _ in range(3)]

    for a, b in zip(run("sync", tmp_path / "a"), run("thread", tmp_path / "b"), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.reliability
def test_refresh_below_one_needs_a_store() -> None:
    with pytest.raises(ValueError, match="store="):
        GenerativeLoader(DataLoader(real()), SeedImageGenerator(), refresh=0.5)
    with pytest.raises(ValueError, match="refresh must be in"):
        GenerativeLoader(DataLoader(real()), SeedImageGenerator(), refresh=1.5)


def test_dataset_fill_store_generates_only_the_fresh_samples(tmp_path) -> None:
    ds = GenerativeDataset(real(60), SeedImageGenerator(), ratio=1.0, refresh=0.5, store=tmp_path)
    assert ds.fill_store(0, progress=False) == 60
    assert 28 <= ds.fill_store(1, progress=False) <= 32
    assert ds.refresh == 0.5


# ---------------------------------------------------------------- replace mode
def replace_loader(ratio: float = 0.5, batch_size: int = 6, **kwargs) -> GenerativeLoader:
    return GenerativeLoader(
        DataLoader(real(), batch_size=batch_size),
        SeedImageGenerator(num_classes=3),
        ratio=ratio,
        mode="replace",
        return_mask=True,
        **kwargs,
    )


def test_replace_keeps_batch_sizes_and_the_exact_ratio() -> None:
    loader = replace_loader(ratio=0.5)
    batches = list(loader)
    assert [len(y) for _, y, _ in batches] == [6, 6, 6, 6]
    synthetic = sum(int(m.sum()) for _, _, m in batches)
    assert synthetic == 8 and 24 - synthetic == 16  # 8 : 16 = 0.5
    assert loader.stats()["replaced"] == 8 and loader.stats()["real"] == 16


def test_replaced_rows_are_drawn_per_batch_not_always_the_last() -> None:
    loader = replace_loader(ratio=1.0, batch_size=8)
    kept = []
    for x, _, mask in loader:
        ids = torch.round(x[~mask][:, 0, 0, 0] * 24).long().tolist()
        assert ids == sorted(ids)  # real rows keep their order
        kept.append(ids)
    positions = Counter(i % 8 for ids in kept for i in ids)
    assert len(positions) > 4  # not the same slots dropped in every batch
    again = [
        torch.round(x[~m][:, 0, 0, 0] * 24).long().tolist() for x, _, m in replace_loader(1.0, 8)
    ]
    assert kept == again  # deterministic


def test_replace_mode_resumes_mid_epoch() -> None:
    reference = list(replace_loader())
    interrupted = replace_loader()
    for i, _ in enumerate(interrupted):
        if i == 1:
            state = interrupted.state_dict()
            break
    resumed = replace_loader()
    resumed.load_state_dict(state)
    for (x, y, m), (ex, ey, em) in zip(list(resumed), reference[2:], strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey) and torch.equal(m, em)


def test_a_large_ratio_with_small_batches_keeps_the_epoch_counts() -> None:
    loader = replace_loader(ratio=9.0, batch_size=1)
    masks = [bool(m.item()) for _, _, m in loader]
    assert len(masks) == 24 and sum(masks) == round(24 * 0.9)  # some batches all synthetic


@pytest.mark.reliability
def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode 'swap'"):
        GenerativeLoader(DataLoader(real()), SeedImageGenerator(), mode="swap")


# ---------------------------------------------------------------- cost counters
def test_cost_counters_fall_to_zero_generation_on_a_warm_store(tmp_path) -> None:
    def run() -> dict[str, float]:
        loader = GenerativeLoader(
            DataLoader(real(), batch_size=6), SeedImageGenerator(), ratio=1.0, store=tmp_path
        )
        list(loader)
        return loader.stats()

    cold, warm = run(), run()
    assert cold["generation_seconds_per_sample"] > 0 and cold["generated"] == 24
    assert warm["generation_seconds_per_sample"] == 0 and warm["cache_hits"] == 24
    for stats in (cold, warm):
        assert stats["iteration_seconds"] > 0 and 0 <= stats["wait_share"] <= 1
