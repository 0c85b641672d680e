"""Importing the metrics and selection layers loads no optional heavy library."""

import subprocess
import sys
from pathlib import Path

HEAVY = ("sklearn", "matplotlib", "open_clip", "kornia")


def test_metrics_and_select_import_no_heavy_libraries():
    # A fresh interpreter (this test process has imported them all already), started in
    # the repository root so that it imports this checkout's gdaload.
    code = (
        "import sys, gdaload.metrics, gdaload.metrics.plots, gdaload.select; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert out.strip() == "[]"
