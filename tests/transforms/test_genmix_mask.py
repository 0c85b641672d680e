"""Where GenMix's synthetic mask comes from when none is passed."""

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gdaload import GenerativeLoader
from gdaload.provenance import mark_synthetic_rows
from gdaload.transforms.genmix import GenMix

K = 3


def real_loader(n: int = 12, batch_size: int = 4) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % K)
    return DataLoader(ds, batch_size=batch_size)


def unmarked_batch(n: int = 6, n_synthetic: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n_synthetic)
    return torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % K


@pytest.mark.parametrize("pairing", ["real-synthetic", "real-union"])
@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_loader_batch_without_mask_mixes_as_with_its_mask(seed_generator, pairing, mode):
    plain = GenerativeLoader(real_loader(), seed_generator, ratio=1.0)
    masked = GenerativeLoader(real_loader(), seed_generator, ratio=1.0, return_mask=True)
    implicit = GenMix(K, pairing=pairing, mode=mode, seed=0)
    explicit = GenMix(K, pairing=pairing, mode=mode, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for (x, y), (x_m, y_m, mask) in zip(plain, masked, strict=True):
            out, soft = implicit(x, y)  # timm's call shape, as on a loader without the mask
            out_m, soft_m = explicit(x_m, y_m, mask)
            assert implicit.last_mix.pairing == pairing  # not the real-real fallback
            assert torch.equal(out, out_m) and torch.equal(soft, soft_m)


def test_mark_on_the_target_alone_is_used():
    x, y = unmarked_batch()
    mask = torch.arange(6) >= 4
    mark_synthetic_rows(y, mask)
    implicit, explicit = GenMix(K, seed=1), GenMix(K, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, soft = implicit(x, y)
    out_m, soft_m = explicit(x, y, mask)
    assert torch.equal(out, out_m) and torch.equal(soft, soft_m)
    assert set(implicit.last_mix.partner[:4].tolist()) <= {4, 5}


def test_mark_of_another_length_is_not_used():
    x, y = unmarked_batch()
    mark_synthetic_rows(x, torch.tensor([False, True]))
    with pytest.warns(UserWarning, match="got no synthetic_mask"):
        GenMix(K, seed=0)(x, y)


@pytest.mark.reliability
@pytest.mark.parametrize("pairing", ["real-synthetic", "real-union"])
def test_moved_loader_batch_without_mask_warns_once(seed_generator, pairing):
    genmix = GenMix(K, pairing=pairing, seed=0)
    batches = iter(GenerativeLoader(real_loader(), seed_generator, ratio=1.0))
    x, y = next(batches)
    # A copy, as x.to(device) makes: not the tensor the loader marked.
    with pytest.warns(UserWarning, match=r"return_mask=True.*torch\.zeros\(B, dtype=torch\.bool\)"):
        genmix(x.clone(), y.clone())
    assert genmix.last_mix.pairing == "real-real"  # the fallback the warning names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x, y in batches:
            genmix(x.clone(), y.clone())
    # Once per GenMix: a second instance warns again.
    with pytest.warns(UserWarning, match="got no synthetic_mask"):
        GenMix(K, pairing=pairing, seed=0)(*unmarked_batch())


def test_warning_names_the_identity_fallback():
    with pytest.warns(UserWarning, match=r"fallback \(no mixing\)"):
        GenMix(K, fallback="identity", seed=0)(*unmarked_batch())


@pytest.mark.parametrize(
    "kwargs, mask",
    [
        ({"pairing": "real-real"}, None),
        ({"pairing": "real-synthetic"}, torch.zeros(6, dtype=torch.bool)),
        ({"pairing": "real-union"}, torch.zeros(6, dtype=torch.bool)),
        ({"pairing": "real-synthetic"}, torch.arange(6) >= 3),
    ],
)
def test_no_warning_with_a_mask_or_real_real_pairing(kwargs, mask):
    genmix = GenMix(K, seed=0, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            genmix(*unmarked_batch(), mask)


def test_disabled_genmix_does_not_warn():
    genmix = GenMix(K, seed=0)
    genmix.enabled = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        genmix(*unmarked_batch())
    assert genmix.last_mix.pairing == "identity"
