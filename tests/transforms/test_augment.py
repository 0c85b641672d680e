import numpy as np
import PIL.Image
import pytest
import torch
from checkers import SeedImageGenerator, SourceBlendGenerator, assert_pickle_round_trip
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

import gdaload.transforms.augment as augment_module
from gdaload.transforms.augment import GenerativeAugment

SHAPE = (1, 4, 4)


def images(n, shape=SHAPE, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def noise(label, seed, shape=SHAPE):
    """What SourceBlendGenerator returns at strength 1."""
    return SeedImageGenerator(3, shape).generate([label], [seed])[0]


class Pairs(Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.transform(self.x[i], int(self.y[i]))


# --- strength and determinism --------------------------------------------------------


def test_strength_zero_returns_source():
    gen = SourceBlendGenerator()
    x = images(1)[0]
    out, label = GenerativeAugment(gen, p=1, strength=0.0)(x, 2)
    assert label == 2 and len(gen.calls) == 1
    torch.testing.assert_close(out, x, atol=0, rtol=0)


def test_strength_one_ignores_source():
    gen = SourceBlendGenerator()
    aug = GenerativeAugment(gen, p=1, strength=1.0)
    a, _ = aug(images(1, seed=1)[0], 1)
    b, _ = aug(images(1, seed=2)[0], 1)
    seeds = [call["seeds"][0] for call in gen.calls]
    torch.testing.assert_close(a, noise(1, seeds[0]), atol=0, rtol=0)
    torch.testing.assert_close(b, noise(1, seeds[1]), atol=0, rtol=0)
    assert gen.label_of(a) == gen.label_of(b) == 1


def test_strength_range_passed_to_generator():
    gen = SourceBlendGenerator()
    aug = GenerativeAugment(gen, p=1, strength=[0.2, 0.4])
    x = images(1)[0]
    out, _ = aug(x, 0)
    assert gen.calls[0]["strength"] == (0.2, 0.4)
    moved = (out - x).abs().max()
    assert 0 < moved < 1


def test_same_seed_same_output_different_seed_differs():
    x = images(1)[0]
    a, _ = GenerativeAugment(SourceBlendGenerator(), p=1, seed=7)(x, 0)
    b, _ = GenerativeAugment(SourceBlendGenerator(), p=1, seed=7)(x.clone(), 0)
    c, _ = GenerativeAugment(SourceBlendGenerator(), p=1, seed=8)(x, 0)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c)


def test_epoch_gives_fresh_variations():
    aug = GenerativeAugment(SourceBlendGenerator(), p=1, strength=0.8)
    x = images(1)[0]
    first, _ = aug(x, 0)
    aug.set_epoch(1)
    second, _ = aug(x, 0)
    aug.set_epoch(0)
    again, _ = aug(x, 0)
    assert not torch.equal(first, second)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    with pytest.raises(ValueError, match="epoch"):
        aug.set_epoch(-1)


def test_no_global_rng_used():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    GenerativeAugment(SourceBlendGenerator(), p=0.5)(images(8), torch.arange(8) % 3)
    assert torch.equal(before, torch.random.get_rng_state())


# --- labels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_sample, label",
    [
        (lambda x: (x, 2), 2),
        (lambda x: (x, torch.tensor(1)), 1),
        (lambda x: (x, np.int64(2)), 2),
        (lambda x: (torch.tensor(1), x), 1),
        (lambda x: {"image": x, "label": 2}, 2),
        (lambda x: {"image": x, "Labels": torch.tensor([1])}, 1),
        (lambda x: {"image": x, "class_label": 0, "index": 5}, 0),
        (lambda x: (x, {"labels": 2}), 2),
    ],
)
def test_label_found_and_passed_to_generator(make_sample, label):
    gen = SourceBlendGenerator()
    sample = make_sample(images(1)[0])
    GenerativeAugment(gen, p=1, strength=1.0)(sample)
    assert gen.calls[0]["labels"] == [label]


def test_custom_labels_getter_and_fixed_label():
    gen = SourceBlendGenerator()
    x = images(1)[0]
    GenerativeAugment(gen, p=1, labels_getter=lambda sample: sample[1]["cls"])((x, {"cls": 2}))
    GenerativeAugment(gen, p=1, label=1)(x)
    GenerativeAugment(gen, p=1, label=0)((x, 2))  # label= wins over the sample's label
    assert [call["labels"] for call in gen.calls] == [[2], [1], [0]]


@pytest.mark.reliability
def test_missing_label_says_how_to_pass_it():
    aug = GenerativeAugment(SourceBlendGenerator(), p=1)
    for sample in (images(1)[0], {"image": images(1)[0]}, (images(1)[0], 0.5)):
        with pytest.raises(ValueError, match="labels_getter.*label="):
            aug(sample)
    with pytest.raises(ValueError, match="outside the generator's classes"):
        aug(images(1)[0], 5)
    with pytest.raises(ValueError, match="one integer class label per image"):
        aug(images(3), torch.tensor([0, 1]))


# --- v2 compatibility -----------------------------------------------------------------


def test_compose_tv_tensor_image_keeps_type_and_other_entries():
    gen = SourceBlendGenerator()
    meta = {"path": "a.png", "size": torch.tensor([4, 4])}
    sample = {"image": tv_tensors.Image(images(1)[0]), "label": 1, "meta": meta}
    out = v2.Compose([GenerativeAugment(gen, p=1, strength=1.0)])(sample)
    assert type(out["image"]) is tv_tensors.Image
    # Containers are rebuilt by v2's flatten/unflatten; their leaves are passed through.
    assert out["meta"]["size"] is meta["size"] and out["meta"] == meta and out["label"] == 1
    torch.testing.assert_close(
        out["image"].as_subclass(torch.Tensor), noise(1, gen.calls[0]["seeds"][0]), atol=0, rtol=0
    )


def test_compose_plain_float_tensor_tuple():
    gen = SourceBlendGenerator()
    x = images(1, seed=3)[0].double()
    label = torch.tensor(2)
    pipeline = v2.Compose([v2.Identity(), GenerativeAugment(gen, p=1, strength=1.0)])
    out, out_label = pipeline(x, label)
    assert out_label is label
    assert type(out) is torch.Tensor and out.dtype == torch.float64
    torch.testing.assert_close(out, noise(2, gen.calls[0]["seeds"][0]).double(), atol=1e-7, rtol=0)


def test_uint8_tensor_round_trips_and_converts_back():
    x = (images(1)[0] * 255).to(torch.uint8)
    same, _ = GenerativeAugment(SourceBlendGenerator(), p=1, strength=0.0)(x, 0)
    assert same.dtype == torch.uint8 and torch.equal(same, x)
    gen = SourceBlendGenerator()
    out, _ = GenerativeAugment(gen, p=1, strength=1.0)(x, 0)
    expected = v2.functional.to_dtype(noise(0, gen.calls[0]["seeds"][0]), torch.uint8, scale=True)
    assert out.dtype == torch.uint8 and torch.equal(out, expected)


def test_pil_images_match_uint8_tensors():
    x = (images(1)[0] * 255).to(torch.uint8)
    pil = v2.functional.to_pil_image(x)
    aug = GenerativeAugment(SourceBlendGenerator(), p=1, strength=0.7)
    out_pil, label = v2.Compose([aug])(pil, 1)
    out_tensor, _ = aug(x, 1)
    assert isinstance(out_pil, PIL.Image.Image) and out_pil.mode == "L" and out_pil.size == (4, 4)
    assert label == 1
    # The content hash sees the same uint8 pixels, so both get the same variation.
    assert torch.equal(v2.functional.pil_to_tensor(out_pil), out_tensor)
    assert not torch.equal(out_tensor, x)


@pytest.mark.reliability
def test_rgb_pil_and_unsupported_mode():
    gen = SourceBlendGenerator(image_shape=(3, 4, 4))
    pil = PIL.Image.new("RGB", (4, 4), (10, 200, 30))
    out, _ = GenerativeAugment(gen, p=1, strength=0.0)(pil, 0)
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(pil))
    with pytest.raises(ValueError, match="v2.RGB"):
        GenerativeAugment(gen, p=1)(PIL.Image.new("P", (4, 4)), 0)


# --- batch mode -----------------------------------------------------------------------


def test_batch_equals_per_sample_rows():
    x, y = images(12, seed=5), torch.arange(12) % 3
    gen = SourceBlendGenerator()
    aug = GenerativeAugment(gen, p=0.5, strength=(0.2, 0.9), seed=3)
    out, out_y = aug(x, y)
    assert out_y is y and out.shape == x.shape and out.dtype == x.dtype
    assert len(gen.calls) == 1  # one generate call for the selected rows
    replaced = aug.decisions(x, y)
    assert gen.calls[0]["n"] == int(replaced.sum()) > 0 and not replaced.all()
    changed = (out != x).flatten(1).any(1)
    assert torch.equal(changed, replaced)
    for i in range(12):
        row, _ = aug(x[i], int(y[i]))
        torch.testing.assert_close(out[i], row, atol=1e-6, rtol=0)
    # Order and batch composition do not matter either.
    flipped, _ = aug(x.flip(0), y.flip(0))
    torch.testing.assert_close(flipped, out.flip(0), atol=1e-6, rtol=0)


def test_batch_as_tv_tensor_and_single_label_broadcast():
    x = tv_tensors.Image(images(4))
    out, label = GenerativeAugment(SourceBlendGenerator(), p=1, strength=1.0)(x, 2)
    assert type(out) is tv_tensors.Image and out.shape == (4, *SHAPE) and label == 2
    assert [SeedImageGenerator().label_of(row) for row in out] == [2] * 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_with_cpu_generator():
    x, y = images(6).cuda().half(), torch.arange(6).cuda() % 3
    aug = GenerativeAugment(SourceBlendGenerator(), p=1, strength=1.0)
    out, _ = aug(x, y)
    assert out.device == x.device and out.dtype == torch.float16
    cpu, _ = aug(x.cpu(), y.cpu())
    torch.testing.assert_close(out.cpu(), cpu, atol=0, rtol=0)


# --- p --------------------------------------------------------------------------------


def test_p_zero_is_identity():
    gen = SourceBlendGenerator()
    x = images(1)[0]
    sample = {"image": x, "no label here": None}
    assert GenerativeAugment(gen, p=0)(sample) is sample
    batch = images(5)
    out, _ = GenerativeAugment(gen, p=0)(batch, torch.zeros(5, dtype=torch.long))
    assert out is batch and gen.calls == []


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (
            tv_tensors.Mask(torch.zeros(4, 4, dtype=torch.uint8)),
            "Mask, but .* not mask-conditioned",
        ),
        (
            tv_tensors.BoundingBoxes([[0, 0, 2, 2]], format="XYXY", canvas_size=(4, 4)),
            "also holds BoundingBoxes that would no longer match",
        ),
    ],
    ids=["mask", "boxes"],
)
def test_masks_and_boxes_beside_the_image_are_refused(annotation, message):
    # Boxes always; a mask unless the generator is mask-conditioned (test_annotations.py).
    gen = SourceBlendGenerator()
    image = tv_tensors.Image(images(1)[0])
    sample = {"image": image, "target": annotation, "label": 1}
    name = type(annotation).__name__
    with pytest.raises(ValueError, match=message):
        GenerativeAugment(gen, p=1)(sample)
    with pytest.raises(ValueError, match=name):
        GenerativeAugment(gen, p=1)(image, annotation, torch.tensor(1))
    assert gen.calls == []  # refused before anything was generated
    assert GenerativeAugment(gen, p=0)(sample) is sample  # p=0 replaces nothing


def test_p_one_always_replaces():
    x, y = images(20, seed=9), torch.arange(20) % 3
    out, _ = GenerativeAugment(SourceBlendGenerator(), p=1, strength=1.0)(x, y)
    assert (out != x).flatten(1).any(1).all()


def test_p_half_replaces_about_half_deterministically():
    x, y = images(200, seed=11), torch.arange(200) % 3
    counts = [
        int(GenerativeAugment(SourceBlendGenerator(), p=0.5, seed=4).decisions(x, y).sum())
        for _ in range(2)
    ]
    assert counts[0] == counts[1]
    # Binomial(200, 0.5): mean 100, sd ~7; a 4-sd band.
    assert 72 <= counts[0] <= 128
    per_sample = sum(
        not torch.equal(
            GenerativeAugment(SourceBlendGenerator(), p=0.5, seed=4)(x[i], int(y[i]))[0], x[i]
        )
        for i in range(200)
    )
    assert per_sample == counts[0]


# --- pickling and DataLoader workers ------------------------------------------------


def test_pickle_round_trip_gives_same_outputs():
    aug = GenerativeAugment(SourceBlendGenerator(), p=0.5, strength=(0.1, 0.9), seed=2)
    aug.set_epoch(3)
    x, y = images(8), torch.arange(8) % 3

    def same(a, b):
        assert (b.p, b.strength, b.seed, b.epoch) == (0.5, (0.1, 0.9), 2, 3)
        torch.testing.assert_close(a(x, y)[0], b(x, y)[0], atol=0, rtol=0)

    assert_pickle_round_trip(aug, same)


def test_dataloader_workers_match_main_process():
    x, y = images(16, seed=21), torch.arange(16) % 3
    aug = GenerativeAugment(SourceBlendGenerator(), p=0.5, strength=0.6, seed=1)
    pipeline = v2.Compose([aug])
    expected = torch.stack([pipeline(x[i], int(y[i]))[0] for i in range(16)])
    loader = DataLoader(Pairs(x, y, pipeline), batch_size=4, num_workers=2)
    got = torch.cat([batch for batch, _ in loader])
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_set_epoch_reaches_persistent_workers():
    x, y = images(8, seed=5), torch.arange(8) % 3
    aug = GenerativeAugment(SourceBlendGenerator(), p=1, strength=0.6, seed=1)
    loader = DataLoader(Pairs(x, y, aug), batch_size=4, num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        aug.set_epoch(epoch)
        got = torch.cat([batch for batch, _ in loader])
        expected = torch.stack([aug(x[i], int(y[i]))[0] for i in range(8)])
        torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert aug.epoch == 1


@pytest.mark.reliability
def test_cuda_generator_in_worker_is_refused(monkeypatch):
    class CudaBlend(SourceBlendGenerator):
        @property
        def device(self):
            return torch.device("cuda")

    monkeypatch.setattr(augment_module, "get_worker_info", lambda: object())
    with pytest.raises(RuntimeError, match="after the loader.*GenerativeLoader"):
        GenerativeAugment(CudaBlend(), p=0.5)(images(1)[0], 0)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.reliability
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strength": 1.5}, "strength must be in"),
        ({"strength": -0.1}, "strength must be in"),
        ({"strength": (0.7, 0.2)}, "min <= max"),
        ({"strength": (0.1, 0.2, 0.3)}, "range must be"),
        ({"p": 1.5}, "p must be"),
        ({"p": -0.1}, "p must be"),
        ({"seed": -1}, "seed"),
        ({"label": 3}, "outside the generator's classes"),
        ({"labels_getter": "labels"}, "labels_getter"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GenerativeAugment(SourceBlendGenerator(), **kwargs)


@pytest.mark.reliability
def test_generator_without_source_support():
    with pytest.raises(ValueError, match="ImageConditionedGenerator.*DiffusionGenerator"):
        GenerativeAugment(SeedImageGenerator())


@pytest.mark.reliability
def test_size_mismatch_names_expected_size_and_resize():
    aug = GenerativeAugment(SourceBlendGenerator(image_shape=(1, 8, 8)), p=0.01)
    # Checked even when the image is not replaced, so errors surface at once.
    with pytest.raises(ValueError, match=r"8x8.*v2\.Resize\(\(8, 8\)\)"):
        aug(images(1)[0], 0)


@pytest.mark.reliability
def test_channel_mismatch_names_grayscale_or_rgb():
    with pytest.raises(ValueError, match=r"v2\.Grayscale"):
        GenerativeAugment(SourceBlendGenerator(), p=1)(images(1, shape=(3, 4, 4))[0], 0)
    with pytest.raises(ValueError, match=r"v2\.RGB"):
        GenerativeAugment(SourceBlendGenerator(image_shape=(3, 4, 4)), p=1)(images(1)[0], 0)


@pytest.mark.reliability
def test_out_of_range_images_point_to_normalize():
    with pytest.raises(ValueError, match="Normalize"):
        GenerativeAugment(SourceBlendGenerator(), p=1)(images(1)[0] * 2 - 1, 0)


def test_repr_shows_settings():
    text = repr(GenerativeAugment(SourceBlendGenerator(), p=0.3, strength=(0.3, 0.6)))
    assert "p=0.3" in text and "strength=(0.3, 0.6)" in text and "SourceBlendGenerator" in text


# --- real diffusion generator -------------------------------------------------------


def test_diffusion_generator_in_compose_and_workers(class_generator):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    pipeline = v2.Compose(
        [GenerativeAugment(class_generator, p=1, strength=0.5), v2.RandomHorizontalFlip(p=0)]
    )
    a, label = pipeline(tv_tensors.Image(x[2]), 2)
    assert type(a) is tv_tensors.Image and a.shape == (1, 8, 8) and label == 2
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x[2])
    batch, _ = GenerativeAugment(class_generator, p=1, strength=0.5)(x, y)
    torch.testing.assert_close(batch[2], a.as_subclass(torch.Tensor), atol=1e-5, rtol=0)
    kept, _ = GenerativeAugment(class_generator, p=1, strength=0.0)(x, y)
    torch.testing.assert_close(kept, x, atol=1e-6, rtol=0)
    loader = DataLoader(Pairs(x, y, pipeline), batch_size=2, num_workers=2)
    torch.testing.assert_close(torch.cat([b for b, _ in loader]), batch, atol=1e-5, rtol=0)
