"""Shared fixtures: tiny models and a cheap CPU generator, built in the tests (no download)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

from checkers import SeedImageGenerator  # noqa: E402
from tiny_models import tiny_class_pipeline, tiny_text_pipeline  # noqa: E402

from gdaload import DiffusionGenerator  # noqa: E402

# Property tests draw the same examples on every run (no example database either), so a
# failure reproduces; HYPOTHESIS_PROFILE=explore draws fresh ones.
settings.register_profile("ci", derandomize=True, deadline=None, database=None)
settings.register_profile("explore", deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def seed_generator() -> SeedImageGenerator:
    return SeedImageGenerator(num_classes=3)


@pytest.fixture(scope="session")
def class_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("class-pipeline")
    tiny_class_pipeline(num_classes=3).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def text_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("text-pipeline")
    tiny_text_pipeline(tmp).save_pretrained(tmp / "pipe")
    return tmp / "pipe"


@pytest.fixture
def class_generator(class_pipeline_dir: Path) -> DiffusionGenerator:
    return DiffusionGenerator.from_pretrained(
        class_pipeline_dir, sampler="ddim", steps=2, device="cpu"
    )


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    # The suite targets 2-core machines; tiny models gain nothing from more threads.
    torch.set_num_threads(1)
