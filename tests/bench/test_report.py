import json
import math
from pathlib import Path

import pytest
import torch

from gdaload.bench.report import write_report
from gdaload.metrics.plots import view_grid


def test_write_report_writes_markdown_and_strict_json(tmp_path: Path) -> None:
    files = write_report(tmp_path / "x_report", "| a |", {"ci": (0.5, math.nan)}, {"p": "p.png"})
    assert files == {
        "p": "p.png",
        "markdown": str(tmp_path / "x_report.md"),
        "json": str(tmp_path / "x_report.json"),
    }
    assert (tmp_path / "x_report.md").read_text() == "| a |\n"
    saved = json.loads((tmp_path / "x_report.json").read_text())
    assert saved == {"ci": [0.5, None], "files": files}


def test_view_grid_writes_a_png(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 8, 8)
    path = view_grid(
        images,
        images[:, None].expand(2, 3, 3, 8, 8),
        [0, 2],
        tmp_path / "views.png",
        view_names=["front", "back", "left", "right"],
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.reliability
def test_view_grid_needs_generated_views_per_image(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"generated must be \(N=2, K, C, H, W\)"):
        view_grid(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), [0, 1], tmp_path / "v.png")
