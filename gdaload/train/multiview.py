"""Train a :class:`~gdaload.MultiViewDiffusion` from scratch on multi-view objects.

Two stages, as in DiMViDA: first the deterministic view autoencoder (L1 reconstruction,
the Laplace likelihood of the paper), then, with the autoencoder frozen, the diffusion
model over the concatenated latents of all views, trained with multi-time masking (see
:mod:`gdaload.train.masking`).

The UNet predicts the velocity ``v`` (diffusers' ``v_prediction``) rather than the noise:
latents are not bounded like pixels, so the samplers' data estimates cannot be clipped,
and a noise-predicting model's estimate ``(x_t - sqrt(1 - a) eps) / sqrt(a)`` blows up
its small errors near the end of the cosine schedule, where ``a`` goes to zero.

Both stages run :func:`~gdaload.train.loop.train_loop`; the final UNet weights are an
exponential moving average. Checkpoints land in ``output_dir/checkpoints/autoencoder``
and ``output_dir/checkpoints/unet``, and a run that is started again resumes from the
newest ones.
"""

from __future__ import annotations

import os
from collections.abc import Sized
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

# Imported from its module: under type checking, diffusers' top-level names are its
# placeholder classes for a missing torch, which have none of the real methods.
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file
from torch.utils.data import Dataset

from gdaload.generators.multiview import (
    MultiViewDiffusion,
    ViewAutoencoder,
    build_multiview_unet,
    denoiser_input,
)
from gdaload.seeding import Stream, derive_seed
from gdaload.train.batches import permuted_batch
from gdaload.train.checkpoints import Checkpoints
from gdaload.train.config import MultiViewTrainingConfig
from gdaload.train.loop import train_loop
from gdaload.train.masking import masked_diffusion_loss, sample_condition_masks

__all__ = ["train_multiview"]


def _views_tensor(dataset: Dataset | torch.Tensor) -> torch.Tensor:
    """All objects as one float tensor ``(N, V, C, H, W)``."""
    if isinstance(dataset, torch.Tensor):
        views = dataset
    else:
        if not isinstance(dataset, Sized):
            raise TypeError("the dataset needs a length: pass a map-style dataset")
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty")
        items = [dataset[i] for i in range(len(dataset))]
        views = torch.stack(
            [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        )
    if views.dim() != 5 or views.shape[1] < 2:
        raise ValueError(
            f"multi-view objects must be (V, C, H, W) with V >= 2 views, got items of "
            f"shape {tuple(views.shape[1:])}; use a dataset such as MultiViewShapes"
        )
    if views.dtype == torch.uint8:
        views = views.float() / 255
    if not views.dtype.is_floating_point:
        raise ValueError(f"views must be float in [0, 1] or uint8, got {views.dtype}")
    return views.float()


def _dataset_names(dataset: Dataset | torch.Tensor) -> tuple[list[str] | None, list[str] | None]:
    """View and class names a dataset carries (MultiViewShapes does), else None."""
    views = getattr(dataset, "views", None)
    names = getattr(dataset, "view_names", None)
    view_names = [names[v] for v in views] if views is not None and names is not None else None
    classes = getattr(dataset, "classes", None)
    return view_names, list(classes) if classes is not None else None


def train_multiview(
    dataset: Dataset | torch.Tensor,
    output_dir: str | os.PathLike,
    config: MultiViewTrainingConfig | None = None,
    **options: Any,
) -> Path:
    """Train the view autoencoder, then the masked multi-view diffusion model, and save both.

    Args:
        dataset: Multi-view objects: items ``(views (V, C, H, W), label)`` or ``views``,
            float in [0, 1] (e.g. :class:`gdaload.datasets.multiview.MultiViewShapes`),
            or one tensor ``(N, V, C, H, W)``. All views are held in memory.
        output_dir: Where the model is saved (``MultiViewDiffusion.from_pretrained``).
        config: The settings; the defaults of :class:`MultiViewTrainingConfig` when None.
        **options: Fields of :class:`MultiViewTrainingConfig`, replacing ``config``'s.

    Returns:
        ``output_dir``.

    Raises:
        ValueError: On invalid settings or data, or checkpoints made with other settings.
        TypeError: On an option that is not a config field, or a dataset without a length.

    Example:
        >>> from gdaload.datasets.multiview import MultiViewShapes
        >>> train_multiview(MultiViewShapes(100), "runs/multiview")  # doctest: +SKIP
        >>> MultiViewDiffusion.from_pretrained("runs/multiview")  # doctest: +SKIP
    """
    config = MultiViewTrainingConfig.resolve(config, options)
    found_views, found_classes = _dataset_names(dataset)
    views = _views_tensor(dataset)
    n, v, c, h, w = views.shape
    down = 2 ** len(config.ae_widths)
    if h != w or h % down:
        raise ValueError(
            f"views must be square with a side divisible by {down} (2 ** "
            f"len(ae_widths)), got {h}x{w}; resize them or change ae_widths"
        )
    view_names = list(config.view_names or found_views or [f"view{i}" for i in range(v)])
    if len(view_names) != v:
        raise ValueError(f"got {len(view_names)} view_names for {v} views")
    class_names = list(config.class_names or found_classes or []) or None

    settings = {
        "views": v,
        "image": [c, h, w],
        "detail_channels": config.detail_channels,
        "ae_widths": list(config.ae_widths),
        "ae_batch_size": config.ae_batch_size,
        "ae_lr": config.ae_lr,
        "widths": list(config.widths),
        "layers_per_block": config.layers_per_block,
        "attention": config.attention,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "p_uncond": config.p_uncond,
        "ema_decay": config.ema_decay,
        "seed": config.seed,
    }
    out = Path(output_dir)
    autoencoder = _train_autoencoder(views, out, config, settings)

    accelerator = Accelerator(cpu=config.cpu)
    device = accelerator.device
    autoencoder.to(device).eval().requires_grad_(False)
    with torch.inference_mode():
        latents = torch.cat(
            [
                autoencoder.encode(views[i : i + 256].flatten(0, 1).to(device)).cpu()
                for i in range(0, n, 256)
            ]
        )
    latents = latents.view(n, v, *latents.shape[1:])
    unet, scheduler = _train_diffusion(latents, out, config, settings, accelerator)

    if accelerator.is_main_process:
        model = MultiViewDiffusion(
            unet,
            autoencoder,
            scheduler,
            view_names=view_names,
            class_names=class_names,
            device="cpu",
        )
        training = {**settings, "ae_steps": config.ae_steps, "steps": config.steps}
        model.save_pretrained(out, training=training)
    accelerator.wait_for_everyone()
    return out


def _train_autoencoder(
    views: torch.Tensor, out: Path, config: MultiViewTrainingConfig, settings: dict[str, Any]
) -> ViewAutoencoder:
    """Stage 1: the autoencoder, saved to ``out/autoencoder`` with latent statistics that
    standardise its latents. A finished stage is loaded from there when resuming."""
    folder = out / "autoencoder"
    checkpoints = Checkpoints(
        out / "checkpoints" / "autoencoder", settings, config.checkpoint_every
    )
    if config.resume and (folder / "config.json").is_file() and checkpoints.latest():
        # Rebuilt from its config, not with from_pretrained, which would record this
        # folder in the config the finished generator is saved with: a resumed run saves
        # the same files as one run straight through.
        model = ViewAutoencoder.from_config(ViewAutoencoder.load_config(folder))
        model.load_state_dict(load_file(folder / SAFETENSORS_WEIGHTS_NAME))
        return model
    images = views.flatten(0, 1)
    with torch.random.fork_rng(devices=[]):  # weight init only; diffusers takes no generator
        torch.manual_seed(derive_seed(config.seed, Stream.MULTIVIEW_AUTOENCODER))
        model = ViewAutoencoder(images.shape[1], config.detail_channels, config.ae_widths)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.ae_lr, weight_decay=0.0)
    accelerator = Accelerator(cpu=config.cpu)

    def loss(prepared: torch.nn.Module, step: int) -> torch.Tensor:
        index = permuted_batch(
            len(images),
            config.ae_batch_size,
            config.seed,
            Stream.MULTIVIEW_AUTOENCODER,
            step,
            accelerator.process_index,
            accelerator.num_processes,
        )
        x = images[index].to(accelerator.device)
        # L1 is the negative log-likelihood of a Laplace decoder, as in the paper.
        return (prepared(x) - x).abs().mean()

    raw = train_loop(
        model,
        optimizer,
        loss,
        accelerator=accelerator,
        steps=config.ae_steps,
        checkpoints=checkpoints,
        resume=config.resume,
        progress=config.progress,
        desc="view autoencoder",
        loss_name="l1",
    )
    raw.eval()
    with torch.inference_mode():
        latents = torch.cat(
            [
                raw.encode_raw(images[i : i + 1024].to(accelerator.device)).cpu()
                for i in range(0, len(images), 1024)
            ]
        )
    raw.set_latent_statistics(
        latents.mean((0, 2, 3)).tolist(), latents.std((0, 2, 3)).clamp_min(1e-6).tolist()
    )
    if accelerator.is_main_process:
        raw.to("cpu").save_pretrained(folder)
    accelerator.wait_for_everyone()
    return raw


def _train_diffusion(
    latents: torch.Tensor,
    out: Path,
    config: MultiViewTrainingConfig,
    settings: dict[str, Any],
    accelerator: Accelerator,
) -> tuple[Any, DDPMScheduler]:
    """Stage 2: the masked multi-view diffusion model over the latents ``(N, V, ...)``;
    returns the UNet holding the moving average of its weights, and the scheduler."""
    n, v = latents.shape[:2]
    with torch.random.fork_rng(devices=[]):  # weight init only; diffusers takes no generator
        torch.manual_seed(derive_seed(config.seed, Stream.MULTIVIEW_DIFFUSION))
        # Any: mypy reads diffusers' UNet2DModel as a placeholder class, not a Module.
        unet: Any = build_multiview_unet(
            v,
            latents.shape[2],
            latents.shape[-1],
            config.widths,
            config.layers_per_block,
            config.attention,
        )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )
    timesteps = scheduler.config.num_train_timesteps
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    device = accelerator.device

    def loss(model: torch.nn.Module, step: int) -> torch.Tensor:
        index = permuted_batch(
            n,
            config.batch_size,
            config.seed,
            Stream.MULTIVIEW_DIFFUSION,
            step,
            accelerator.process_index,
            accelerator.num_processes,
        )
        seed = derive_seed(config.seed, Stream.MULTIVIEW_DIFFUSION, 1, step)
        draws = torch.Generator().manual_seed(seed)
        z = latents[index]
        observed = sample_condition_masks(len(z), v, draws, config.p_uncond)
        noise = torch.randn(z.shape, generator=draws)
        t = torch.randint(0, timesteps, (len(z),), generator=draws)
        inputs = torch.where(observed[:, :, None, None, None], z, scheduler.add_noise(z, noise, t))
        target = scheduler.get_velocity(z, noise, t)
        pred = model(denoiser_input(inputs, observed).to(device), t.to(device)).sample
        return masked_diffusion_loss(pred.view_as(z), target.to(device), observed.to(device)).mean()

    final = train_loop(
        unet,
        optimizer,
        loss,
        accelerator=accelerator,
        steps=config.steps,
        checkpoints=Checkpoints(out / "checkpoints" / "unet", settings, config.checkpoint_every),
        resume=config.resume,
        ema_decay=config.ema_decay,
        progress=config.progress,
        desc="multiview diffusion",
    )
    return final, scheduler
