"""LatentCache with a tiny AutoencoderKL: the encoder sees each real image once."""

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from gdaload.cache import LatentCache


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8),
        norm_num_groups=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    ).eval()


class CountingEncoder:
    def __init__(self, vae: AutoencoderKL) -> None:
        self.vae, self.seen = vae, 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += len(images)
        return self.vae.encode(images * 2 - 1).latent_dist.mean


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_encoder_runs_once_per_image() -> None:
    vae = tiny_vae()
    encode, cache = CountingEncoder(vae), LatentCache.for_module(vae)
    batch = images(4, 0)
    first = cache.get_or_encode(batch, encode)
    assert encode.seen == 4 and first.shape == (4, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(first, vae.encode(batch * 2 - 1).latent_dist.mean)
    mixed = torch.cat([batch[2:], images(2, 1), batch[:1], images(2, 1)[:1]])
    again = cache.get_or_encode(mixed, encode)
    assert encode.seen == 6  # only the two new images, a repeat within the batch once
    assert torch.equal(again[:2], first[2:]) and torch.equal(again[4], first[0])
    assert torch.equal(again[5], again[2])
    assert cache.stats() == {"hits": 3, "misses": 7, "latents": 6}


@pytest.mark.reliability
def test_persisted_latents_are_reused_and_damage_is_dropped(tmp_path: Path) -> None:
    vae = tiny_vae()
    first = LatentCache.for_module(vae, tmp_path).get_or_encode(images(3, 0), CountingEncoder(vae))
    encode = CountingEncoder(vae)
    reopened = LatentCache.for_module(vae, tmp_path)
    assert torch.equal(reopened.get_or_encode(images(3, 0), encode), first) and encode.seen == 0
    shard = next(tmp_path.rglob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="dropping damaged latent shard"):
        damaged = LatentCache.for_module(vae, tmp_path)
    assert len(damaged) == 0 and not shard.exists()


@pytest.mark.reliability
def test_folder_removed_under_the_cache_keeps_latents_in_memory(tmp_path: Path) -> None:
    import shutil

    vae = tiny_vae()
    cache = LatentCache.for_module(vae, tmp_path / "latents")
    cache.get_or_encode(images(2, 0), CountingEncoder(vae))
    shutil.rmtree(tmp_path / "latents")
    encode = CountingEncoder(vae)
    with pytest.warns(RuntimeWarning, match="keeping latents in memory only"):
        got = cache.get_or_encode(images(2, 1), encode)
    assert got.shape == (2, 4, 4, 4) and encode.seen == 2
    again = CountingEncoder(vae)
    assert torch.equal(cache.get_or_encode(images(2, 1), again), got) and again.seen == 0


def test_another_encoder_gets_another_namespace(tmp_path: Path) -> None:
    a, b = tiny_vae(0), tiny_vae(1)
    LatentCache.for_module(a, tmp_path).get_or_encode(images(2, 0), CountingEncoder(a))
    encode_b = CountingEncoder(b)
    LatentCache.for_module(b, tmp_path).get_or_encode(images(2, 0), encode_b)
    assert encode_b.seen == 2


@pytest.mark.reliability
def test_bad_input_is_explained() -> None:
    with pytest.raises(ValueError, match="namespace"):
        LatentCache("")
    cache = LatentCache("abc")
    with pytest.raises(ValueError, match="one latent per image"):
        cache.get_or_encode(images(2, 0), lambda x: x[:1])
