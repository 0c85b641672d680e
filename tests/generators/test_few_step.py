"""Few-step text-to-image generation: LCM-LoRA weights loaded the diffusers way and
sampled with the LCM scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from gdaload import DiffusionGenerator
from gdaload.generators.hub import load_pipeline

PROMPTS = {"prompts": "a photo of a {name}", "class_names": ["cat", "dog"], "device": "cpu"}


@pytest.fixture(scope="module")
def lcm_lora(text_pipeline_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA on the tiny pipeline's attention, saved with ``save_lora_weights``."""
    pipe = load_pipeline(text_pipeline_dir)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    pipe.unet.add_adapter(config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # peft starts lora_B at zero (a no-op); random weights make the LoRA change samples.
        for name, weight in pipe.unet.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=g) * 0.5)
    folder = tmp_path_factory.mktemp("lcm-lora")
    StableDiffusionPipeline.save_lora_weights(
        folder,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
    )
    return folder


def test_lcm_lora_loads_by_folder_or_file_and_samples_with_lcm(
    text_pipeline_dir: Path, lcm_lora: Path
) -> None:
    gen = DiffusionGenerator.from_pretrained(text_pipeline_dir, lcm_lora=lcm_lora, **PROMPTS)
    assert (gen.sampler, gen.steps) == ("lcm", 4)
    assert type(gen.pipeline.scheduler).__name__ == "LCMScheduler"
    assert gen.pipeline.unet.peft_config  # kept as an adapter, not fused
    plain = DiffusionGenerator.from_pretrained(text_pipeline_dir, sampler="lcm", steps=4, **PROMPTS)
    assert "lcm_lora" in gen.config and "lcm_lora" not in plain.config
    assert gen.config_hash() != plain.config_hash()
    images = gen.generate([0, 1], [0, 1])
    assert torch.isfinite(images).all()
    assert not torch.equal(images, plain.generate([0, 1], [0, 1]))
    file = next(lcm_lora.glob("*.safetensors"))
    by_file = DiffusionGenerator.from_pretrained(text_pipeline_dir, lcm_lora=file, **PROMPTS)
    assert by_file.config_hash() == gen.config_hash()
    assert torch.equal(by_file.generate([0, 1], [0, 1]), images)


@pytest.mark.reliability
def test_lcm_lora_explains_bad_sources(
    text_pipeline_dir: Path, class_pipeline_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="must hold one .safetensors LoRA file"):
        DiffusionGenerator.from_pretrained(text_pipeline_dir, lcm_lora=tmp_path, **PROMPTS)
    with pytest.raises(ValueError, match="no LCM-LoRA weights at"):
        DiffusionGenerator.from_pretrained(
            text_pipeline_dir, lcm_lora=tmp_path / "missing.safetensors", **PROMPTS
        )
    with pytest.raises(ValueError, match="lcm_lora= is for text-to-image models"):
        DiffusionGenerator.from_pretrained(class_pipeline_dir, lcm_lora=tmp_path, device="cpu")
