from pathlib import Path

import pytest
import torch

from gdaload.metrics.plots import accuracy_vs_ratio, sample_grid, tsne_map

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert len(data) > len(PNG_SIGNATURE) and data.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("channels", [1, 3])
def test_sample_grid_writes_png(tmp_path: Path, channels: int) -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(6, channels, 4, 4, generator=g)
    fake = (torch.rand(4, channels, 4, 4, generator=g) * 255).to(torch.uint8)
    out = sample_grid(
        real,
        [0, 1, 2, 0, 1, 2],
        fake,
        [0, 0, 2, 2],
        tmp_path / "sub" / "grid.png",
        per_class=2,
        class_names=["a", "b", "c"],
        title="tiny",
    )
    assert out == tmp_path / "sub" / "grid.png"
    assert_png(out)


def test_tsne_map_writes_png_for_few_points(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    state = torch.get_rng_state()
    out = tsne_map(
        torch.randn(6, 3, generator=g),
        [0, 1, 0, 1, 0, 1],
        torch.randn(5, 3, generator=g).numpy(),
        [1, 1, 0, 0, 1],
        tmp_path / "tsne.png",
    )
    assert_png(out)
    assert torch.equal(torch.get_rng_state(), state)


def test_accuracy_vs_ratio_writes_png_with_missing_intervals(tmp_path: Path) -> None:
    out = accuracy_vs_ratio(
        [2, 0.5, 1],
        [82.0, 80.0, 84.0],
        [1.0, float("nan"), 0.5],
        tmp_path / "ratio.png",
        baseline=(78.0, float("nan")),
        points={"GenMix": (2.0, 86.0, 1.0)},
    )
    assert_png(out)


@pytest.mark.reliability
def test_plots_reject_bad_input(tmp_path: Path) -> None:
    x = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError, match="labels"):
        sample_grid(x, [0, 1], x, [0, 1, 0, 1], tmp_path / "a.png")
    with pytest.raises(ValueError, match="generated"):
        sample_grid(x, [0, 1, 0, 1], torch.rand(4, 1, 8, 8), [0, 1, 0, 1], tmp_path / "a.png")
    with pytest.raises(ValueError, match="feature dimensions differ"):
        tsne_map(torch.randn(5, 3), [0] * 5, torch.randn(5, 4), [0] * 5, tmp_path / "b.png")
    with pytest.raises(ValueError, match="at least 4"):
        tsne_map(torch.randn(1, 3), [0], torch.randn(2, 3), [0, 0], tmp_path / "b.png")
    with pytest.raises(ValueError, match="positive"):
        accuracy_vs_ratio([0, 1], [1.0, 2.0], [0.1, 0.1], tmp_path / "c.png")
    with pytest.raises(ValueError, match="equal length"):
        accuracy_vs_ratio([1, 2], [1.0], [0.1, 0.1], tmp_path / "c.png")
    assert not list(tmp_path.iterdir())
