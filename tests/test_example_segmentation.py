"""The README's segmentation example runs end to end (a few steps, few sampler steps)."""

import importlib.util
import math
from pathlib import Path


def test_the_segmentation_example_runs() -> None:
    path = Path(__file__).parents[1] / "examples" / "segmentation.py"
    spec = importlib.util.spec_from_file_location("segmentation_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(steps=3, sampler_steps=2)
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert abs(result["synthetic_share"] - 1 / 3) < 1e-9  # ratio 0.5: 5 of every 15 rows
    assert result["varied_change"] > 0
