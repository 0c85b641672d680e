"""Tiny randomly initialised diffusion models, built inside the tests (no download)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DiTTransformer2DModel,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.multiview.generator import MultiViewDiffusion, build_multiview_unet
from gdaload.generators.pipeline import ClassConditionalPipeline
from gdaload.train.text2image import character_tokenizer


def tiny_unet(num_classes: int = 3, channels: int = 1, size: int = 8, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_classes + 1,
    )


def tiny_class_pipeline(
    num_classes: int = 3, channels: int = 1, size: int = 8
) -> ClassConditionalPipeline:
    return ClassConditionalPipeline(tiny_unet(num_classes, channels, size), DDPMScheduler())


def tiny_text_pipeline(tmp: Path) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = character_tokenizer(tmp / "tok")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            projection_dim=32,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 16),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        clip_sample=False,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_dit(num_classes: int = 3) -> DiTTransformer2DModel:
    """A 2-layer DiT with learned sigma (it predicts noise and variance)."""
    torch.manual_seed(0)
    return DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=4,
        patch_size=2,
        num_embeds_ada_norm=num_classes,
        norm_num_groups=1,
    )


def tiny_vae(channels: int = 1, latent_channels: int = 4) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        latent_channels=latent_channels,
        block_out_channels=(16, 16),
        norm_num_groups=8,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )


def tiny_multiview(sampler: str = "ddim", steps: int = 3, **kwargs) -> MultiViewDiffusion:
    """A multi-view generator with random weights: 8x8 RGB views (front, back, left,
    right), 4x4 latents of 3 + 2 channels."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ae = ViewAutoencoder(in_channels=3, detail_channels=2, widths=(8,))
        unet = build_multiview_unet(4, 5, 4, widths=(8, 16))
    scheduler = DDPMScheduler(prediction_type="v_prediction", clip_sample=False)
    return MultiViewDiffusion(
        unet,
        ae,
        scheduler,
        view_names=["front", "back", "left", "right"],
        sampler=sampler,
        steps=steps,
        device="cpu",
        **kwargs,
    )


def tiny_class_images(
    folder: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 2, size: int = 16
) -> Path:
    """An image folder ``folder/<class>/<i>.png`` of random RGB images, one colour cast
    per class, for adapting the tiny text pipeline."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = torch.rand(size, size, 3, generator=g) * 0.5
            pixels[..., label % 3] += 0.5
            array = (pixels * 255).to(torch.uint8).numpy()
            Image.fromarray(array).save(folder / name / f"{i}.png")
    return folder


def tiny_mask_diffusion(num_classes: int = 3, num_mask_classes: int = 4, steps: int = 2):
    """A randomly initialised ``MaskDiffusion`` on 8x8 grayscale images."""
    from gdaload.generators.mask_diffusion import MaskDiffusion

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1 + num_mask_classes,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_classes,
    )
    return MaskDiffusion(
        unet, DDPMScheduler(), num_mask_classes=num_mask_classes, steps=steps, device="cpu"
    )


def tiny_joint_diffusion(num_classes: int = 3, num_mask_classes: int = 4, steps: int = 2):
    """A randomly initialised ``JointDiffusion``; class ``c`` may hold labels 0 and c + 1."""
    from gdaload.generators.mask_diffusion import JointDiffusion

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1 + num_mask_classes,
        out_channels=1 + num_mask_classes,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_classes,
    )
    allowed = [[0, c + 1] for c in range(num_classes)]
    return JointDiffusion(
        unet,
        DDPMScheduler(),
        num_mask_classes=num_mask_classes,
        image_channels=1,
        allowed_labels=allowed,
        steps=steps,
        device="cpu",
    )


def seeded_masks(labels: list[int], seeds: list[int], size: int = 8) -> torch.Tensor:
    """One mask per sample, a pure function of its seed: background, or label + 1."""
    masks = [
        (torch.rand(size, size, generator=torch.Generator().manual_seed(20_000 + s)) > 0.5).long()
        * (y + 1)
        for y, s in zip(labels, seeds, strict=True)
    ]
    return torch.stack(masks) if masks else torch.empty(0, size, size, dtype=torch.long)
