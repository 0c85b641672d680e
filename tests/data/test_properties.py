"""Properties of GenerativeLoader and GenerativeDataset over random ratios, label
multisets and batch splits (hypothesis; derandomized by the profile in conftest.py).

The generator here writes its (label, seed) request into the image, so every served
synthetic row can be read back as the exact sample it is.
"""

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeDataset, GenerativeLoader, SeedPlan
from gdaload.generators.base import Generator, as_labels, as_seeds

#: Pixels 0..63 hold the seed's bits, pixel 64 the label (scaled to [0, 1]).
WIDTH = 65
POLICIES = ("match", "uniform", "balance")


class KeyImageGenerator(Generator):
    """An image that spells out its (label, seed): cheap, exact, in [0, 1]."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes, self.image_shape = num_classes, (1, 1, WIDTH)

    def generate(self, labels: Any, seeds: Sequence[int]) -> torch.Tensor:
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        bits = (np.asarray(seeds, dtype=np.uint64)[:, None] >> np.arange(64, dtype=np.uint64)) & 1
        out = torch.zeros(len(labels), *self.image_shape)
        out[:, 0, 0, :64] = torch.from_numpy(bits.astype(np.float32))
        out[:, 0, 0, 64] = labels.float() / max(self.num_classes - 1, 1)
        return out

    def keys(self, images: torch.Tensor) -> list[tuple[int, int]]:
        """The (label, seed) each image was made for."""
        bits = images[:, 0, 0, :64].round().to(torch.int64).numpy().astype(np.uint64)
        seeds = (bits << np.arange(64, dtype=np.uint64)).sum(1, dtype=np.uint64).tolist()
        labels = (images[:, 0, 0, 64] * max(self.num_classes - 1, 1)).round().long().tolist()
        return list(zip(labels, seeds, strict=True))

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "key-image", "classes": self.num_classes}


def expected_count(ratio: float, real: int) -> int:
    """``round(ratio * real)``, halves up: the rule of ``SyntheticSpec.synthetic_count``."""
    return int(np.floor(ratio * real + 0.5))


def split(labels: list[int], sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of the real samples ``labels`` (inputs of zeros) cut at ``sizes``."""
    batches, start = [], 0
    for size in sizes:
        y = torch.tensor(labels[start : start + size])
        batches.append((torch.zeros(len(y), 1, 1, WIDTH), y))
        start += size
    return batches


@st.composite
def sizes_summing_to(draw: st.DrawFn, n: int) -> list[int]:
    """Random batch sizes (1..64) that add up to ``n``."""
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(draw(st.integers(1, min(64, n - sum(sizes)))))
    return sizes


@st.composite
def real_labels(draw: st.DrawFn, max_size: int = 120) -> tuple[int, list[int]]:
    """(num_classes, real labels), at least one label; some classes may be absent."""
    num_classes = draw(st.integers(1, 6))
    labels = draw(st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=max_size))
    return num_classes, labels


def serve(
    loader: GenerativeLoader, generator: KeyImageGenerator
) -> tuple[list[tuple[int, int]], list[int]]:
    """(label, seed) of every synthetic row served in one epoch, and their labels."""
    keys, labels = [], []
    for x, y, mask in loader:
        keys += generator.keys(x[mask])
        labels += y[mask].tolist()
    return keys, labels


ratios = st.one_of(
    st.integers(0, 50).map(float),
    st.floats(0, 50, allow_nan=False, allow_infinity=False),
    st.fractions(0, 50, max_denominator=8).map(float),
)


@settings(max_examples=40)
@given(
    ratio=ratios,
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=30),
    num_classes=st.integers(1, 6),
    policy=st.sampled_from(POLICIES),
    data=st.data(),
)
def test_ratio_holds_per_epoch_and_after_every_batch(
    ratio: float, sizes: list[int], num_classes: int, policy: str, data: st.DataObject
) -> None:
    n = sum(sizes)
    labels = data.draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n))
    batches = split(labels, sizes)
    for i, (x, _) in enumerate(batches):  # real rows that can be told apart
        x.uniform_(0, 1, generator=torch.Generator().manual_seed(i))
    gen = KeyImageGenerator(num_classes)
    loader = GenerativeLoader(
        batches, gen, ratio=ratio, class_policy=policy, labels=labels, return_mask=True
    )
    real_so_far = synthetic_so_far = 0
    for (x, y, mask), (real_x, real_y) in zip(loader, batches, strict=True):
        b = len(real_y)
        # The synthetic rows are appended after the real ones, and the mask marks them.
        assert mask.tolist() == [False] * b + [True] * (len(y) - b)
        assert torch.equal(x[:b], real_x) and torch.equal(y[:b], real_y)
        real_so_far += b
        synthetic_so_far += int(mask.sum())
        assert synthetic_so_far == expected_count(ratio, real_so_far)
        assert abs(synthetic_so_far - ratio * real_so_far) <= 0.5 + 1e-9 * max(1.0, ratio * n)
        served = gen.keys(x[mask])
        assert [label for label, _ in served] == y[mask].tolist()  # made for its label
        assert all(0 <= label < num_classes for label in y[mask].tolist())
    assert synthetic_so_far == expected_count(ratio, n) == loader.stats()["synthetic"]


def check_policy_rule(policy: str, real: np.ndarray, counts: np.ndarray, given: bool) -> None:
    """``counts`` follow ``policy``'s rule for real class counts ``real``."""
    total, present = int(counts.sum()), real > 0
    if given:
        assert (counts[~present] == 0).all()  # no class the real data lacks
    if policy == "match":
        exact = real / real.sum() * total
        assert (np.abs(counts - exact) < 1).all()
    elif policy == "uniform":
        chosen = counts[present] if given else counts  # without labels: every class
        assert chosen.max() - chosen.min() <= 1
    else:  # balance: no class is filled above another's real + synthetic total, + 1
        totals = real + counts
        filled = np.flatnonzero(counts > 0)
        for c in filled:
            assert totals[c] <= totals[present].min() + 1


@settings(max_examples=50)
@given(
    drawn=real_labels(),
    ratio=st.floats(0, 5, allow_nan=False),
    policy=st.sampled_from(POLICIES),
    labels_given=st.booleans(),
    data=st.data(),
)
def test_class_policy_counts_are_planned_served_and_follow_the_rule(
    drawn: tuple[int, list[int]],
    ratio: float,
    policy: str,
    labels_given: bool,
    data: st.DataObject,
) -> None:
    num_classes, labels = drawn
    labels_given = labels_given or policy != "uniform"  # match and balance need them
    sizes = data.draw(sizes_summing_to(len(labels)))
    gen = KeyImageGenerator(num_classes)
    loader = GenerativeLoader(
        split(labels, sizes),
        gen,
        ratio=ratio,
        seed=data.draw(st.integers(0, 2**32)),
        class_policy=policy,
        labels=labels if labels_given else None,
        return_mask=True,
    )
    real = np.bincount(labels, minlength=num_classes)
    epochs = []
    for _ in range(2):  # fresh samples each epoch, planned and served alike
        planned = loader.synthetic_class_counts()
        keys, served = serve(loader, gen)
        assert planned.tolist() == np.bincount(served, minlength=num_classes).tolist()
        assert [label for label, _ in keys] == served  # each image made for its label
        assert planned.sum() == expected_count(ratio, len(labels))
        check_policy_rule(policy, real, planned, labels_given)
        epochs.append(planned.tolist())
    if labels_given:  # exact counts from the real frequencies; only their order changes
        assert epochs[0] == epochs[1]


@settings(max_examples=30)
@given(
    drawn=real_labels(max_size=100),
    ratio=st.floats(0, 4, allow_nan=False),
    policy=st.sampled_from(POLICIES),
    engine=st.sampled_from(["sync", "thread"]),
    pool=st.integers(1, 8),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_served_samples_do_not_depend_on_the_batch_split(
    drawn: tuple[int, list[int]],
    ratio: float,
    policy: str,
    engine: str,
    pool: int,
    seed: int,
    data: st.DataObject,
) -> None:
    num_classes, labels = drawn
    gen = KeyImageGenerator(num_classes)
    runs = []
    for _ in range(2):
        sizes = data.draw(sizes_summing_to(len(labels)))
        threaded = (
            dict(pool_size=pool, generation_batch_size=data.draw(st.integers(1, pool)))
            if engine == "thread"
            else {}
        )
        loader = GenerativeLoader(
            split(labels, sizes),
            gen,
            ratio=ratio,
            seed=seed,
            class_policy=policy,
            labels=labels,
            return_mask=True,
            engine=engine,
            **threaded,
        )
        with loader:  # two epochs: the thread engine generates into the next one ahead
            runs.append([serve(loader, gen)[0] for _ in range(2)])
    plan = SeedPlan(seed)
    for epoch, (first, second) in enumerate(zip(*runs, strict=True)):
        assert Counter(first) == Counter(second)
        assert first == second  # in plan order, too
        # And they are the plan's samples: synthetic index j has the seed plan's seed j.
        assert [s for _, s in first] == [plan.sample_seed(epoch, j) for j in range(len(first))]
        assert len(first) == expected_count(ratio, len(labels))


@settings(max_examples=30)
@given(
    drawn=real_labels(max_size=40),
    ratio=st.one_of(st.floats(0, 10, allow_nan=False), st.integers(0, 10).map(float)),
    policy=st.sampled_from(POLICIES),
    seed=st.integers(0, 2**32),
    batch_sizes=st.lists(st.integers(1, 64), min_size=1, max_size=3),
)
def test_generative_dataset_length_labels_and_batching(
    drawn: tuple[int, list[int]],
    ratio: float,
    policy: str,
    seed: int,
    batch_sizes: list[int],
) -> None:
    num_classes, labels = drawn
    n = len(labels)
    gen = KeyImageGenerator(num_classes)
    real = TensorDataset(torch.rand(n, 1, 1, WIDTH), torch.tensor(labels))
    ds = GenerativeDataset(real, gen, ratio=ratio, seed=seed, class_policy=policy)
    assert len(ds) == n + expected_count(ratio, n) == ds.num_real + ds.num_synthetic
    items = ds.__getitems__(list(range(len(ds))))
    for i in range(n):
        assert torch.equal(items[i][0], real[i][0]) and int(items[i][1]) == labels[i]
    synthetic = items[n:]
    planned = ds.synthetic_labels().tolist()
    assert [int(y) for _, y in synthetic] == planned
    plan = SeedPlan(seed)
    keys = gen.keys(torch.stack([x for x, _ in synthetic])) if synthetic else []
    assert keys == [(label, plan.sample_seed(0, j)) for j, label in enumerate(planned)]
    assert np.bincount(planned, minlength=num_classes).tolist() == (
        ds.synthetic_class_counts().tolist()
    )
    # The same items whatever the DataLoader's batch size.
    every_x = torch.stack([x for x, _ in items])
    every_y = torch.tensor([int(y) for _, y in items])
    for batch_size in batch_sizes:
        batches = list(DataLoader(ds, batch_size=batch_size))
        assert torch.equal(torch.cat([x for x, _ in batches]), every_x)
        assert torch.equal(torch.cat([y for _, y in batches]), every_y)
