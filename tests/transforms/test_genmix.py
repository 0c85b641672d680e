import doctest
import pickle
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.utils.data
from scipy import stats

import gdaload.transforms.genmix.inputs as inputs_module
import gdaload.transforms.genmix.record as record_module
import gdaload.transforms.genmix.sampling as sampling_module
import gdaload.transforms.genmix.transform as transform_module
from gdaload.transforms.genmix import GenMix

K = 3


def batch(n=8, n_synthetic=3, dtype=torch.float64, seed=0, hw=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, hw, hw, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randint(0, K, (n,), generator=g)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[n - n_synthetic :] = True
    return x, y, mask


def one_hot(y, k=K, dtype=torch.float64):
    return torch.nn.functional.one_hot(y, k).to(dtype)


def expected_mixup(x, y, record, smoothing=0.0):
    w = record.lam.to(x.dtype).view(-1, 1, 1, 1)
    x_exp = x[record.anchor] * (1 - w) + x[record.partner] * w
    target_dtype = torch.promote_types(x.dtype, torch.float32)
    oh = one_hot(y, dtype=target_dtype) * (1 - smoothing) + smoothing / K
    wt = record.lam.to(target_dtype).view(-1, 1)
    y_exp = oh[record.anchor] * (1 - wt) + oh[record.partner] * wt
    return x_exp, y_exp


# --- lam distribution ---------------------------------------------------------------


@pytest.mark.parametrize(
    "beta, alpha, other", [("paper", 0.4, "symmetric"), ("symmetric", 0.4, "paper")]
)
def test_lam_follows_configured_beta(beta, alpha, other):
    lam = GenMix(K, alpha=alpha, beta=beta, seed=1).sample_lam(4000).numpy()
    second = {"paper": 1.0, "symmetric": alpha}
    assert stats.kstest(lam, stats.beta(alpha, second[beta]).cdf).pvalue > 0.01
    # The test has power: the other parametrisation is clearly rejected.
    assert stats.kstest(lam, stats.beta(alpha, second[other]).cdf).pvalue < 1e-6


def test_lam_of_mixed_rows_follows_paper_beta():
    genmix = GenMix(K, alpha=2.0, pairing="real-real", seed=2)
    x = torch.zeros(3000, 1, 1, 1, dtype=torch.float64)
    genmix(x, torch.zeros(3000, dtype=torch.int64))
    lam = genmix.last_mix.lam.numpy()
    assert stats.kstest(lam, stats.beta(2.0, 1.0).cdf).pvalue > 0.01


# --- pairings -----------------------------------------------------------------------


def test_real_synthetic_mixup_is_exact_and_lam_weights_synthetic():
    x, y, mask = batch(n=8, n_synthetic=3)
    genmix = GenMix(K, seed=0)
    x_mixed, soft = genmix(x, y, mask)
    rec = genmix.last_mix
    assert rec.pairing == "real-synthetic" and rec.box is None
    real, syn = torch.arange(5), torch.arange(5, 8)
    # Real rows keep their place as anchor; synthetic rows keep theirs as partner.
    assert torch.equal(rec.anchor[real], real) and mask[rec.partner[real]].all()
    assert torch.equal(rec.partner[syn], syn) and (~mask[rec.anchor[syn]]).all()
    # Partners are dealt so that every synthetic sample is used.
    assert set(rec.partner[real].tolist()) == {5, 6, 7}
    assert ((rec.lam > 0) & (rec.lam < 1)).all()
    x_exp, y_exp = expected_mixup(x, y, rec)
    assert torch.equal(x_mixed, x_exp)
    assert torch.allclose(soft, y_exp, atol=1e-12)
    assert torch.allclose(soft.sum(1), torch.ones(8, dtype=soft.dtype))
    # Row 0 checked against the paper's formula directly: lam weights x_S.
    s, lam0 = rec.partner[0], rec.lam[0].item()
    assert torch.allclose(x_mixed[0], lam0 * x[s] + (1 - lam0) * x[0])
    if y[s] != y[0]:
        assert soft[0, y[s]].item() == pytest.approx(lam0)
        assert soft[0, y[0]].item() == pytest.approx(1 - lam0)
    assert not torch.equal(x, x_mixed)  # input left alone, output is new
    assert torch.equal(x, batch(n=8, n_synthetic=3)[0])


def test_real_union_partners_are_other_rows():
    genmix = GenMix(K, pairing="real-union", seed=3)
    for i in range(20):
        x, y, mask = batch(n=6, n_synthetic=2, seed=i)
        x_mixed, soft = genmix(x, y, mask)
        rec = genmix.last_mix
        assert rec.pairing == "real-union"
        real = torch.arange(4)
        assert torch.equal(rec.anchor[real], real)
        assert (rec.partner[real] != real).all()
        assert (~mask[rec.anchor[4:]]).all() and torch.equal(rec.partner[4:], torch.arange(4, 6))
        x_exp, y_exp = expected_mixup(x, y, rec)
        assert torch.equal(x_mixed, x_exp) and torch.allclose(soft, y_exp, atol=1e-12)
    # Over many batches real rows meet both real and synthetic partners.
    seen = set()
    for i in range(30):
        x, y, mask = batch(n=6, n_synthetic=2, seed=i)
        genmix(x, y, mask)
        seen.update(mask[genmix.last_mix.partner[:4]].tolist())
    assert seen == {True, False}


def test_keep_synthetic_rows_passes_them_through():
    x, y, mask = batch(n=6, n_synthetic=2)
    genmix = GenMix(K, synthetic_rows="keep", label_smoothing=0.1, seed=0)
    x_mixed, soft = genmix(x, y, mask)
    assert torch.equal(x_mixed[4:], x[4:])
    smooth = one_hot(y[4:], dtype=soft.dtype) * 0.9 + 0.1 / K
    assert torch.allclose(soft[4:], smooth)
    assert (genmix.last_mix.lam[4:] == 0).all() and (genmix.last_mix.lam[:4] > 0).all()


def test_real_real_ignores_mask_and_permutes():
    x, y, mask = batch(n=8, n_synthetic=3)
    genmix = GenMix(K, pairing="real-real", beta="symmetric", seed=4)
    x_mixed, soft = genmix(x, y, mask)
    rec = genmix.last_mix
    assert rec.pairing == "real-real"
    assert torch.equal(rec.anchor, torch.arange(8))
    assert sorted(rec.partner.tolist()) == list(range(8))
    x_exp, y_exp = expected_mixup(x, y, rec)
    assert torch.equal(x_mixed, x_exp) and torch.allclose(soft, y_exp, atol=1e-12)


@pytest.mark.parametrize("pairing", ["real-synthetic", "real-union"])
@pytest.mark.parametrize("mask_kind", ["none", "all-real", "all-synthetic"])
def test_fallback_when_a_kind_is_missing(pairing, mask_kind):
    x, y, _ = batch(n=6, n_synthetic=0)
    mask = {
        "none": None,
        "all-real": torch.zeros(6, dtype=torch.bool),
        "all-synthetic": torch.ones(6, dtype=torch.bool),
    }[mask_kind]

    genmix = GenMix(K, pairing=pairing, seed=5)
    # No mask and an unmarked batch: the fallback applies, with a warning that says so.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x_mixed, soft = genmix(x, y, mask)
    assert [str(w.message)[:6] for w in caught] == (["GenMix"] if mask is None else [])
    rec = genmix.last_mix
    assert rec.pairing == "real-real"
    assert sorted(rec.partner.tolist()) == list(range(6))
    x_exp, y_exp = expected_mixup(x, y, rec)
    assert torch.equal(x_mixed, x_exp) and torch.allclose(soft, y_exp, atol=1e-12)
    assert torch.allclose(soft.sum(1), torch.ones(6, dtype=soft.dtype)) and (soft >= 0).all()

    genmix = GenMix(K, pairing=pairing, fallback="identity", seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_out, soft = genmix(x, y, mask)
    assert x_out is x and genmix.last_mix.pairing == "identity"
    assert torch.equal(soft, one_hot(y, dtype=soft.dtype))


# --- cutmix -------------------------------------------------------------------------


@pytest.mark.parametrize("pairing", ["real-synthetic", "real-real"])
def test_cutmix_label_weight_is_pasted_area(pairing):
    n, hw = 16, 10
    x = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, hw, hw).clone()
    y = torch.arange(n) % K
    mask = torch.arange(n) >= 10
    genmix = GenMix(K, mode="cutmix", pairing=pairing, seed=6)
    x_mixed, soft = genmix(x, y, mask)
    rec = genmix.last_mix
    assert rec.box is not None and rec.box.shape == (n, 4)
    checked = 0
    for i in range(n):
        a, p = rec.anchor[i].item(), rec.partner[i].item()
        top, bottom, left, right = rec.box[i].tolist()
        from_partner = x_mixed[i] == p + 1
        area = (bottom - top) * (right - left) / hw**2
        assert rec.lam[i].item() == pytest.approx(area)
        oh = one_hot(y, dtype=soft.dtype)
        expected = oh[a] * (1 - area) + oh[p] * area
        assert torch.allclose(soft[i], expected, atol=1e-6)
        if a != p:
            checked += 1
            assert from_partner.float().mean().item() == pytest.approx(area)
            assert from_partner[:, top:bottom, left:right].all()
            assert (x_mixed[i][~from_partner] == a + 1).all()
    assert checked >= 10
    assert torch.allclose(soft.sum(1), torch.ones(n))


# --- targets and smoothing ------------------------------------------------------------


def test_label_smoothing_like_timm():
    s = 0.1
    x, y, mask = batch()
    genmix = GenMix(K, label_smoothing=s, seed=0)
    genmix.enabled = False
    _, soft = genmix(x, y, mask)
    off, on = s / K, 1 - s + s / K
    assert torch.allclose(soft, one_hot(y, dtype=soft.dtype) * (on - off) + off)

    genmix.enabled = True
    x_mixed, soft = genmix(x, y, mask)
    x_exp, y_exp = expected_mixup(x, y, genmix.last_mix, smoothing=s)
    assert torch.allclose(soft, y_exp, atol=1e-12)
    assert (soft >= off - 1e-12).all()
    assert torch.allclose(soft.sum(1), torch.ones(8, dtype=soft.dtype))


def test_soft_target_input_is_mixed():
    x, y, mask = batch()
    soft_in = torch.softmax(torch.randn(8, K, generator=torch.Generator().manual_seed(0)), 1)
    genmix = GenMix(K, seed=0)
    _, soft = genmix(x, soft_in, mask)
    rec = genmix.last_mix
    wt = rec.lam.to(torch.float64).view(-1, 1)
    exp = soft_in.double()[rec.anchor] * (1 - wt) + soft_in.double()[rec.partner] * wt
    assert torch.allclose(soft, exp, atol=1e-6)
    # Sequences of ints or of rows are accepted too.
    genmix2 = GenMix(K, seed=0)
    _, soft2 = genmix2(x, y.tolist(), mask.tolist())
    _, soft3 = GenMix(K, seed=0)(x, y, mask)
    assert torch.equal(soft2, soft3)


# --- switches -------------------------------------------------------------------------


def test_disabled_and_p0_return_inputs_with_one_hot():
    x, y, mask = batch()
    for genmix in (GenMix(K, seed=0), GenMix(K, p=0.0, seed=0)):
        genmix.mixup_enabled = genmix.p < 1  # the p=1 one is switched off via timm's name
        assert genmix.enabled is (genmix.p < 1)
        x_out, soft = genmix(x, y, mask)
        assert x_out is x
        assert torch.equal(soft, one_hot(y, dtype=soft.dtype))
        assert genmix.last_mix.pairing == "identity"


def test_p1_always_mixes_and_p_half_sometimes():
    x, y, mask = batch(n=4, n_synthetic=2, hw=1)
    always = GenMix(K, p=1.0, seed=0)
    half = GenMix(K, p=0.5, seed=0)
    mixed = 0
    for _ in range(200):
        x_out, _ = always(x, y, mask)
        assert always.last_mix.pairing == "real-synthetic" and x_out is not x
        half(x, y, mask)
        mixed += half.last_mix.pairing != "identity"
    assert 70 < mixed < 130


# --- randomness -----------------------------------------------------------------------


def run(genmix, calls=3):
    outs = []
    for i in range(calls):
        x, y, mask = batch(seed=i)
        outs.append(genmix(x, y, mask))
    return outs


def same(a, b):
    return all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )


def test_same_seed_same_output_and_different_seed_differs():
    assert same(run(GenMix(K, seed=7)), run(GenMix(K, seed=7)))
    assert not same(run(GenMix(K, seed=7)), run(GenMix(K, seed=8)))
    unseeded = GenMix(K)
    assert same(run(unseeded), run(GenMix(K, seed=unseeded.seed)))


def test_global_rng_untouched():
    torch.manual_seed(0)
    np.random.seed(0)
    before = (torch.rand(1), np.random.rand())
    torch.manual_seed(0)
    np.random.seed(0)
    run(GenMix(K, seed=1, mode="cutmix"))
    assert (torch.rand(1), np.random.rand()) == before


def test_set_epoch_and_state_dict():
    a, b = GenMix(K, seed=9), GenMix(K, seed=9)
    run(a, calls=2)
    a.set_epoch(3)
    b.set_epoch(3)
    assert same(run(a), run(b))
    b.set_epoch(4)
    a.set_epoch(3)
    assert not same(run(a), run(b))

    state = a.state_dict()
    first = run(a)
    a.enabled = False
    a.load_state_dict(state)
    assert a.enabled and same(first, run(a))
    c = GenMix(K, seed=0)
    c.load_state_dict(state)
    a.load_state_dict(state)
    assert same(run(a), run(c))


def test_pickle_round_trip():
    genmix = GenMix(
        K,
        alpha=0.5,
        beta="symmetric",
        pairing="real-union",
        mode="cutmix",
        label_smoothing=0.1,
        seed=3,
    )
    run(genmix, calls=1)
    copy = pickle.loads(pickle.dumps(genmix))
    assert repr(copy) == repr(genmix)
    assert same(run(genmix), run(copy))


def test_dataloader_workers_get_distinct_streams(monkeypatch):
    genmix = GenMix(K, seed=0)
    copies = [pickle.loads(pickle.dumps(genmix)) for _ in range(3)]

    def draws(copy, worker):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=worker))
        return copy.sample_lam(5)

    w0, w1, w0_again = draws(copies[0], 0), draws(copies[1], 1), draws(copies[2], 0)
    assert not torch.equal(w0, w1)
    assert torch.equal(w0, w0_again)
    monkeypatch.undo()
    assert not torch.equal(genmix.sample_lam(5), w0)


# --- dtypes and devices ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_dtype_preserved(dtype, mode):
    x, y, mask = batch(dtype=dtype)
    genmix = GenMix(K, mode=mode, seed=0)
    x_mixed, soft = genmix(x, y, mask)
    assert x_mixed.dtype == dtype and x_mixed.shape == x.shape
    assert soft.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.allclose(soft.sum(1).double(), torch.ones(8, dtype=torch.float64), atol=1e-3)
    if mode == "mixup":
        x_exp, _ = expected_mixup(x, y, genmix.last_mix)
        assert torch.equal(x_mixed, x_exp)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_cuda_matches_cpu(mode):
    x, y, mask = batch(dtype=torch.float32)
    cpu = GenMix(K, mode=mode, seed=0)
    gpu = GenMix(K, mode=mode, seed=0)
    x_cpu, soft_cpu = cpu(x, y, mask)
    x_gpu, soft_gpu = gpu(x.cuda(), y.cuda(), mask.cuda())
    assert x_gpu.device.type == "cuda" and soft_gpu.device.type == "cuda"
    assert x_gpu.dtype == torch.float32
    assert torch.equal(gpu.last_mix.partner, cpu.last_mix.partner)
    assert torch.allclose(x_gpu.cpu(), x_cpu) and torch.allclose(soft_gpu.cpu(), soft_cpu)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.reliability
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 0.0}, "alpha must be > 0"),
        ({"alpha": -1.0}, "alpha must be > 0"),
        ({"alpha": float("nan")}, "alpha must be a finite"),
        ({"pairing": "synth"}, "valid values are 'real-synthetic', 'real-union', 'real-real'"),
        ({"mode": "blend"}, "valid values are 'mixup', 'cutmix'"),
        ({"beta": "uniform"}, "valid values are 'paper', 'symmetric'"),
        ({"synthetic_rows": "drop"}, "valid values are 'mix', 'keep'"),
        ({"fallback": "skip"}, "valid values are 'mixup', 'identity'"),
        ({"p": 1.5}, r"must be in \[0, 1\]"),
        ({"p": -0.1}, r"must be in \[0, 1\]"),
        ({"p": float("nan")}, "p must be a finite"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        ({"num_classes": 0}, "num_classes must be a positive int"),
        ({"seed": -1}, "seed must be a non-negative int"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    args = {"num_classes": K, **kwargs}
    with pytest.raises(ValueError, match=message):
        GenMix(**args)


@pytest.mark.reliability
def test_bad_epoch_and_state():
    genmix = GenMix(K, seed=0)
    with pytest.raises(ValueError, match="epoch must be a non-negative int"):
        genmix.set_epoch(-1)
    with pytest.raises(ValueError, match="state is missing"):
        genmix.load_state_dict({"seed": 0})


@pytest.mark.parametrize(
    "module", [transform_module, record_module, sampling_module, inputs_module]
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
