"""MultiViewDiffusion: denoiser input, clean observed views, persistence and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from checkers import assert_image_batch, assert_same_per_sample
from tiny_models import tiny_multiview

from gdaload.fingerprint import content_hash
from gdaload.generators.base import MultiViewGenerator, check_generated
from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.multiview.generator import (
    MultiViewDiffusion,
    denoiser_input,
)
from gdaload.generators.samplers import SAMPLERS
from gdaload.seeding import derive_seed
from gdaload.tta import GenerativeTTA

VIEWS = ["front", "back", "left", "right"]


@pytest.fixture(scope="module")
def generator() -> MultiViewDiffusion:
    return tiny_multiview()


# ---------------------------------------------------------------- denoiser input
def test_denoiser_input_appends_one_mask_channel_per_view() -> None:
    latents = torch.randn(2, 4, 2, 3, 3)
    observed = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]]).bool()
    inp = denoiser_input(latents, observed)
    assert inp.shape == (2, 4 * 2 + 4, 3, 3)
    torch.testing.assert_close(inp[:, :8], latents.flatten(1, 2))
    torch.testing.assert_close(inp[:, 8:, 0, 0], observed.float())


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_observed_latents_come_through_sampling_untouched(sampler: str) -> None:
    gen = tiny_multiview(sampler=sampler, steps=4)
    latents = torch.randn(3, 4, 5, 4, 4)
    observed = torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0]]).bool()
    out = gen.sample_latents(latents, observed, [0, 1, 2])
    assert torch.equal(out[observed], latents[observed])
    assert torch.isfinite(out).all()
    assert (out[~observed] - latents[~observed]).abs().max() > 1e-3


def test_generate_views_keeps_observed_pixels_and_is_deterministic(
    generator: MultiViewDiffusion,
) -> None:
    views = torch.rand(3, 4, 3, 8, 8)
    out = generator.generate_views(views, ["back", 2], [5, 6, 7])
    assert out.shape == (3, 4, 3, 8, 8)
    assert torch.equal(out[:, 1], views[:, 1]) and torch.equal(out[:, 2], views[:, 2])
    assert_image_batch(out.flatten(0, 1), 12, (3, 8, 8))
    torch.testing.assert_close(generator.generate_views(views, ["back", 2], [5, 6, 7]), out)
    other = generator.generate_views(views, ["back", 2], [8, 6, 7])
    assert (other[0, 0] - out[0, 0]).abs().max() > 1e-4
    # Unobserved inputs are ignored.
    noisy = views.clone()
    noisy[:, 0] = 1.0
    torch.testing.assert_close(generator.generate_views(noisy, ["back", 2], [5, 6, 7]), out)


def test_per_object_masks_and_batch_independence(generator: MultiViewDiffusion) -> None:
    views = torch.rand(4, 4, 3, 8, 8)
    mask = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 1]]).bool()

    def make(rows: list[int], seeds: list[int]) -> torch.Tensor:
        return generator.generate_views(views[rows], mask[rows], seeds).flatten(1)

    assert_same_per_sample(make, [0, 1, 2, 3], [10, 11, 12, 13])


def test_generate_contract_returns_one_novel_view(generator: MultiViewDiffusion) -> None:
    source = torch.rand(3, 3, 8, 8)
    images = generator.generate([0, 0, 0], [1, 2, 3], source=source)
    check_generated(images, 3, generator.image_shape)
    novel = generator.novel_views(source, [1, 2, 3])
    assert novel.shape == (3, 3, 3, 8, 8)
    # Each generated image is one of its sample's novel views.
    hits = [(novel[i] - images[i]).flatten(1).abs().amax(1).min() < 1e-5 for i in range(3)]
    assert all(hits)
    assert isinstance(generator, MultiViewGenerator)


# ---------------------------------------------------------------- errors
@pytest.mark.reliability
def test_errors_are_clear(generator: MultiViewDiffusion) -> None:
    views = torch.rand(2, 4, 3, 8, 8)
    with pytest.raises(ValueError, match="no observed view"):
        generator.generate_views(views, [], [0, 1])
    with pytest.raises(ValueError, match="no observed view"):
        generator.generate_views(views, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]).bool(), [0, 1])
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        generator.generate_views(views, [4], [0, 1])
    with pytest.raises(ValueError, match="unknown view 'top'"):
        generator.generate_views(views, ["top"], [0, 1])
    with pytest.raises(ValueError, match="takes 8x8"):
        generator.generate_views(torch.rand(2, 4, 3, 16, 16), [0], [0, 1])
    with pytest.raises(ValueError, match="the model has 4"):
        generator.generate_views(torch.rand(2, 3, 3, 8, 8), [0], [0, 1])
    with pytest.raises(ValueError, match="takes 8x8"):
        generator.novel_views(torch.rand(2, 3, 16, 16), [0, 1])
    with pytest.raises(ValueError, match="pass source="):
        generator.generate([0], [0])
    with pytest.raises(ValueError, match="strength must be 1"):
        generator.generate([0], [0], source=torch.rand(1, 3, 8, 8), strength=0.5)
    with pytest.raises(ValueError, match="view index 7"):
        tiny_multiview(observed_view=7)


# ---------------------------------------------------------------- persistence and training
def test_save_load_round_trip(generator: MultiViewDiffusion, tmp_path: Path) -> None:
    generator.save_pretrained(tmp_path / "model", note="test")
    loaded = MultiViewDiffusion.from_pretrained(
        tmp_path / "model", sampler="ddim", steps=3, device="cpu"
    )
    assert loaded.view_names == VIEWS
    assert loaded.weights_fingerprint() == generator.weights_fingerprint()
    saved = json.loads((tmp_path / "model" / "gdaload.json").read_text())
    assert saved["note"] == "test" and saved["observed_view"] == "front"
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["_class_name"] == "MultiViewPipeline"
    views = torch.rand(2, 4, 3, 8, 8)
    torch.testing.assert_close(
        loaded.generate_views(views, [0], [3, 4]), generator.generate_views(views, [0], [3, 4])
    )
    with pytest.raises(FileNotFoundError, match="train-multiview"):
        MultiViewDiffusion.from_pretrained(tmp_path)


def test_autoencoder_latents_hold_the_thumbnail_and_statistics_round_trip(tmp_path: Path) -> None:
    ae = ViewAutoencoder(in_channels=3, detail_channels=2, widths=(8,))
    images = torch.rand(2, 3, 8, 8)
    raw = ae.encode_raw(images)
    torch.testing.assert_close(raw[:, :3], torch.nn.functional.avg_pool2d(images * 2 - 1, 2))
    ae.set_latent_statistics([0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0])
    expected = (raw - torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]).view(1, -1, 1, 1)) / torch.arange(
        1.0, 6.0
    ).view(1, -1, 1, 1)
    torch.testing.assert_close(ae.encode(images), expected)
    ae.save_pretrained(tmp_path / "ae")
    loaded = ViewAutoencoder.from_pretrained(tmp_path / "ae")
    torch.testing.assert_close(loaded.encode(images), ae.encode(images))
    torch.testing.assert_close(loaded.decode(ae.encode(images)), ae.decode(ae.encode(images)))
    with pytest.raises(ValueError, match="one per latent channel"):
        ViewAutoencoder(in_channels=3, detail_channels=2, latent_std=[1.0])


def test_generative_tta_over_novel_views(generator: MultiViewDiffusion) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    back = MultiViewDiffusion(
        generator.unet,
        generator.autoencoder,
        generator.train_scheduler,
        view_names=VIEWS,
        observed_view="back",
        sampler="ddim",
        steps=2,
        device="cpu",
    )
    tta = GenerativeTTA(model, back, views=3, seed=0)
    x = torch.rand(2, 3, 8, 8)
    views = tta.generated_views(x)
    # The three views of an input are the novel views of one sample seeded by its content.
    seeds = [derive_seed(0, content_hash(x[i]), 0) for i in range(2)]
    torch.testing.assert_close(views, back.novel_views(x, seeds))
    assert tta(x).shape == (2, 5)
