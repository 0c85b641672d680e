"""Single views, the views generated from them, and batches that append those views."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_multiview

from gdaload.bench.novel_views import ViewBatches, ViewSet, generate_novel_views


def view_set(n: int, seed: int) -> ViewSet:
    g = torch.Generator().manual_seed(seed)
    return ViewSet(
        torch.rand(n, 3, 8, 8, generator=g),
        torch.arange(n) % 3,
        torch.randint(0, 4, (n,), generator=g),
    )


def test_view_batches_append_each_images_generated_views_after_the_real_batch() -> None:
    data = view_set(5, 0)
    novel = torch.stack([data.images + k for k in (10, 20, 30)], dim=1)  # (5, 3, C, H, W)
    batches = list(ViewBatches(data, novel, batch_size=2, seed=0))
    assert len(batches) == 3 == len(ViewBatches(data, novel, 2, 0))
    seen = []
    for x, y, mask in batches:
        real = int((~mask).sum())
        assert mask.tolist() == [False] * real + [True] * 3 * real
        assert torch.equal(y[real:], y[:real].repeat_interleave(3))
        for i in range(real):
            assert torch.equal(x[real + 3 * i], x[i] + 10) and torch.equal(
                x[real + 3 * i + 2], x[i] + 30
            )
        seen += y[:real].tolist()
    assert sorted(seen) == sorted(data.labels.tolist())  # every real image once
    order = [b[1].tolist() for b in ViewBatches(data, None, 2, 0)]
    assert order == [b[1][~b[2]].tolist() for b in batches]  # same order with and without


def test_novel_views_are_generated_from_each_images_own_view() -> None:
    gen = tiny_multiview(steps=2)
    data = view_set(6, 3)
    seeds = list(range(6))
    views = generate_novel_views(gen, data.images, data.views, seeds)
    assert views.shape == (6, 3, 3, 8, 8) and gen.observed_view == 0
    for i in range(6):
        gen.observed_view = int(data.views[i])
        torch.testing.assert_close(views[i], gen.novel_views(data.images[i : i + 1], [i])[0])
    gen.observed_view = 0


@pytest.mark.reliability
def test_view_set_checks_its_shapes() -> None:
    with pytest.raises(ValueError, match="N labels and N view"):
        ViewSet(torch.rand(3, 3, 8, 8), torch.zeros(3), torch.zeros(2))
