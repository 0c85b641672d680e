"""ClipFilter with a tiny randomly initialised open_clip model (nothing is downloaded)."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from gdaload.seeding import derive_seed
from gdaload.select import ClipFilter, SelectedGenerator

NAME = "gdaload-select-tiny-clip"
CLASSES = ["red square", "green dot", "blue line"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(model, tokenizer, weights path) of a registered tiny CLIP config."""
    folder = tmp_path_factory.mktemp("clip")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }
    (folder / f"{NAME}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / f"{NAME}.json")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model_and_transforms(NAME)[0].eval()
    weights = folder / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return model, open_clip.get_tokenizer(NAME), weights


def manual_scores(model, tokenizer, images, prompts_per_image, reduce="mean"):
    x = F.interpolate(images, size=(32, 32), mode="bicubic", antialias=True, align_corners=False)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        img = F.normalize(model.encode_image((x.clamp(0, 1) - mean) / std), dim=1)
        out = []
        for feat, prompts in zip(img, prompts_per_image, strict=True):
            txt = F.normalize(model.encode_text(tokenizer(prompts)), dim=1)
            sims = txt @ feat
            out.append(sims.mean() if reduce == "mean" else sims.max())
    return torch.stack(out)


def test_scores_match_a_manual_computation_from_local_weights(tiny_clip):
    model, tokenizer, weights = tiny_clip
    stage = ClipFilter(NAME, pretrained=weights, class_names=CLASSES)
    assert stage.image_size == (32, 32)
    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([2, 0, 1])
    expected = manual_scores(
        model, tokenizer, images, [[f"a photo of a {CLASSES[c]}."] for c in labels]
    )
    assert torch.allclose(stage.score(images, labels), expected, atol=1e-5)


def test_built_model_with_several_prompts_mean_and_max(tiny_clip):
    model, tokenizer, _ = tiny_clip
    prompts = {0: ["a red square", "crimson"], 1: ["green"], 2: ["a blue line", "azure", "navy"]}
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 2, 1])
    for reduce in ("mean", "max"):
        stage = ClipFilter(model, tokenizer=tokenizer, prompts=prompts, reduce=reduce)
        expected = manual_scores(
            model,
            tokenizer,
            images.expand(-1, 3, -1, -1),
            [prompts[int(c)] for c in labels],
            reduce,
        )
        assert torch.allclose(stage.score(images, labels), expected, atol=1e-5)


def test_non_square_images_are_resized_like_open_clip(tiny_clip):
    model, tokenizer, _ = tiny_clip
    stage = ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES)
    images = torch.rand(2, 3, 6, 9, generator=torch.Generator().manual_seed(3))
    # open_clip's inference transform: shorter side to 32, then a centre crop.
    resized = TF.resize(images, 32, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    expected = TF.normalize(
        TF.center_crop(resized, [32, 32]).clamp(0, 1),
        open_clip.OPENAI_DATASET_MEAN,
        open_clip.OPENAI_DATASET_STD,
    )
    assert torch.allclose(stage.preprocess(images), expected, atol=1e-5)


def test_selected_generator_keeps_the_most_similar_candidate(gen, tiny_clip):
    model, tokenizer, _ = tiny_clip
    stage = ClipFilter(
        model, tokenizer=tokenizer, class_names=CLASSES, templates=["{}", "a {} photo"]
    )
    selected = SelectedGenerator(gen, stage, candidates=4)
    seed = 12
    out = selected.generate([1], [seed])
    cands = torch.tensor([gen.value(derive_seed(seed, c)) for c in range(4)])
    images = cands.view(-1, 1, 1, 1).expand(-1, *gen.image_shape)
    sims = manual_scores(model, tokenizer, images, [["green dot", "a green dot photo"]] * 4)
    assert float(out[0].mean()) == pytest.approx(float(cands[sims.argmax()]))


def test_config_follows_prompts_rule_and_weights(tiny_clip):
    model, tokenizer, weights = tiny_clip
    a = ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES).config
    assert a == ClipFilter(NAME, pretrained=weights, class_names=CLASSES).config | {
        "model": model.__class__.__qualname__
    }
    assert ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES[::-1]).config != a
    assert ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES, reduce="max").config != a
    assert ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES, keep=0.5).config != a
    with torch.random.fork_rng():
        torch.manual_seed(1)
        other = open_clip.create_model_and_transforms(NAME)[0]
    assert (
        ClipFilter(other, tokenizer=tokenizer, class_names=CLASSES).config["weights"]
        != a["weights"]
    )


@pytest.mark.reliability
def test_clip_bad_inputs(tiny_clip, tmp_path):
    model, tokenizer, _ = tiny_clip
    with pytest.raises(ValueError, match="path of a local weights file"):
        ClipFilter(NAME, pretrained=tmp_path / "missing.pt", class_names=CLASSES)
    with pytest.raises(ValueError, match="needs its tokenizer"):
        ClipFilter(model, class_names=CLASSES)
    with pytest.raises(ValueError, match="exactly one of prompts"):
        ClipFilter(model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="exactly one of prompts"):
        ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES, prompts=["x"])
    with pytest.raises(ValueError, match="templates must be strings"):
        ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES, templates="a photo")
    with pytest.raises(ValueError, match=r"check classes \[1\]"):
        ClipFilter(model, tokenizer=tokenizer, prompts={0: "a", 1: []})
    with pytest.raises(ValueError, match="reduce must be one of"):
        ClipFilter(model, tokenizer=tokenizer, class_names=CLASSES, reduce="median")
    stage = ClipFilter(model, tokenizer=tokenizer, prompts={0: "a", 2: "b"})
    with pytest.raises(ValueError, match=r"no prompts for classes \[1, 3\]"):
        stage.score(torch.rand(2, 3, 4, 4), torch.tensor([1, 3]))
    with pytest.raises(ValueError, match=r"takes \(N, 1 or 3, H, W\) images"):
        stage.score(torch.rand(2, 4, 4, 4), torch.tensor([0, 2]))
