"""Train a :class:`~gdaload.MultiViewDiffusion` from scratch on multi-view objects.

Two stages, as in DiMViDA: first the deterministic view autoencoder (L1 reconstruction,
the Laplace likelihood of the paper), then, with the autoencoder frozen, the diffusion
model over the concatenated latents of all views, with multi-time masking:

* with probability ``p_uncond`` (0.2 in the paper) no view conditions and every view is
  diffused;
* otherwise the set of conditioning views C is drawn uniformly among the non-empty
  proper subsets of the views, C stays clean (diffusion time 0) and the missing views M
  are diffused to a common time t;
* the prediction error counts on the diffused views only, weighted by ``1 + |C| / |M|``
  so that an object's loss does not shrink with the number of views it conditions on.

The UNet predicts the velocity ``v`` (diffusers' ``v_prediction``) rather than the noise:
latents are not bounded like pixels, so the samplers' data estimates cannot be clipped,
and a noise-predicting model's estimate ``(x_t - sqrt(1 - a) eps) / sqrt(a)`` blows up
its small errors near the end of the cosine schedule, where ``a`` goes to zero.

Devices go through ``accelerate`` and the final UNet weights are an exponential moving
average (diffusers ``EMAModel``). Checkpoints land in ``output_dir/checkpoints`` and a
run that is started again resumes from the newest one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.multiview.generator import (
    MultiViewDiffusion,
    build_multiview_unet,
    denoiser_input,
)
from gdaload.seeding import Stream, derive_seed

__all__ = [
    "condition_weight",
    "masked_diffusion_loss",
    "sample_condition_masks",
    "train_multiview",
]

logger = logging.getLogger(__name__)


def sample_condition_masks(
    batch: int, num_views: int, generator: torch.Generator, p_uncond: float = 0.2
) -> torch.Tensor:
    """Draw which views condition (stay clean) in each training object.

    Args:
        batch: Number of objects.
        num_views: ``V``, at least 2.
        generator: CPU generator all draws come from.
        p_uncond: Probability that no view conditions.

    Returns:
        Boolean ``(batch, V)``, True for conditioning views. A row is all False with
        probability ``p_uncond``, otherwise one of the ``2**V - 2`` non-empty proper
        subsets, each equally likely; it is never all True (nothing would be learned).

    Example:
        >>> masks = sample_condition_masks(4, 4, torch.Generator().manual_seed(0))
        >>> masks.shape, bool(masks.all(1).any())
        (torch.Size([4, 4]), False)
    """
    if num_views < 2:
        raise ValueError(f"num_views must be at least 2, got {num_views}")
    if not 0 <= p_uncond <= 1:
        raise ValueError(f"p_uncond must be a probability in [0, 1], got {p_uncond}")
    uncond = torch.rand(batch, generator=generator) < p_uncond
    subsets = torch.randint(1, 2**num_views - 1, (batch,), generator=generator)
    bits = (subsets[:, None] >> torch.arange(num_views)) & 1
    return bits.bool() & ~uncond[:, None]


def condition_weight(observed: torch.Tensor) -> torch.Tensor:
    """``1 + |C| / |M|`` per object, for a boolean ``(B, V)`` mask of conditioning views.

    Raises:
        ValueError: If an object has no diffused view (``|M| = 0``).
    """
    conditioning = observed.sum(1).double()
    missing = (~observed).sum(1).double()
    if bool((missing == 0).any()):
        raise ValueError("every object needs at least one diffused view; a mask row is all True")
    return (1 + conditioning / missing).to(torch.float32)


def masked_diffusion_loss(
    prediction: torch.Tensor, target: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """Per-object loss: the squared error on the diffused views, averaged over all
    ``V`` views' elements, times ``1 + |C| / |M|``.

    With ``V = |C| + |M|`` this equals the mean squared error over the diffused views'
    elements: objects conditioned on many views do not count less.

    Args:
        prediction, target: ``(B, V, ...)``.
        observed: Boolean ``(B, V)``, True for conditioning views (their error is ignored).

    Returns:
        ``(B,)`` losses.
    """
    diffused = (~observed).to(prediction.dtype).view(*observed.shape, *[1] * (prediction.dim() - 2))
    error = ((prediction - target) ** 2 * diffused).flatten(1).mean(1)
    return error * condition_weight(observed).to(error.device)


def _views_tensor(dataset: Dataset | torch.Tensor) -> torch.Tensor:
    """All objects as one float tensor ``(N, V, C, H, W)``."""
    if isinstance(dataset, torch.Tensor):
        views = dataset
    else:
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


class _Checkpoints:
    """``checkpoints/{stage}-{step}.pt`` files: the newest two of each stage are kept."""

    def __init__(self, folder: Path, accelerator: Accelerator, settings: dict[str, Any]) -> None:
        self.folder, self.accelerator, self.settings = folder, accelerator, settings

    def latest(self, stage: str) -> dict[str, Any] | None:
        found = sorted((int(p.stem.split("-")[1]), p) for p in self.folder.glob(f"{stage}-*.pt"))
        if not found:
            return None
        state = torch.load(found[-1][1], map_location="cpu", weights_only=False)
        if state["settings"] != self.settings:
            changed = sorted(
                k for k in self.settings if state["settings"].get(k) != self.settings[k]
            )
            raise ValueError(
                f"the checkpoints in {self.folder} were made with other settings ({changed}); "
                "pass resume=False (--no-resume) to start over, or another output folder"
            )
        logger.info("resuming %s from %s", stage, found[-1][1])
        return state

    def save(self, stage: str, step: int, **state: Any) -> None:
        if not self.accelerator.is_main_process:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{stage}-{step}.pt"
        partial = target.with_suffix(".tmp")
        torch.save({"step": step, "settings": self.settings, **state}, partial)
        partial.replace(target)  # a run cut off mid-write leaves no half checkpoint
        done = sorted(int(p.stem.split("-")[1]) for p in self.folder.glob(f"{stage}-*.pt"))
        for old in done[:-2]:
            (self.folder / f"{stage}-{old}.pt").unlink(missing_ok=True)


def _batches(
    n: int, batch_size: int, seed: int, stage: int, step: int, accelerator: Accelerator
) -> torch.Tensor:
    """Indices of the batch at ``step``: epochs are permutations keyed by (seed, stage,
    epoch), so a resumed run sees the same batches; each process takes its share."""
    epoch, offset = divmod(step, max(1, n // batch_size))
    rng = torch.Generator().manual_seed(derive_seed(seed, stage, epoch))
    index = torch.randperm(n, generator=rng)[offset * batch_size : (offset + 1) * batch_size]
    return index[accelerator.process_index :: accelerator.num_processes]


def train_multiview(
    dataset: Dataset | torch.Tensor,
    output_dir: str | os.PathLike,
    *,
    view_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    detail_channels: int = 3,
    ae_widths: Sequence[int] = (16, 32),
    ae_steps: int = 1000,
    ae_batch_size: int = 64,
    ae_lr: float = 2e-3,
    widths: Sequence[int] = (48, 96),
    layers_per_block: int = 1,
    attention: bool = True,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 2e-3,
    p_uncond: float = 0.2,
    ema_decay: float = 0.999,
    seed: int = 0,
    checkpoint_every: int = 500,
    resume: bool = True,
    cpu: bool = False,
    progress: bool = True,
) -> Path:
    """Train the view autoencoder, then the masked multi-view diffusion model, and save both.

    Args:
        dataset: Multi-view objects: items ``(views (V, C, H, W), label)`` or ``views``,
            float in [0, 1] (e.g. :class:`gdaload.datasets.multiview.MultiViewShapes`),
            or one tensor ``(N, V, C, H, W)``. All views are held in memory.
        output_dir: Where the model is saved (``MultiViewDiffusion.from_pretrained``).
        view_names, class_names: Saved with the model; taken from the dataset when it
            has ``view_names``/``views`` and ``classes``.
        detail_channels: Learned latent channels of a view, beside its thumbnail (see
            :class:`~gdaload.generators.multiview.autoencoder.ViewAutoencoder`).
        ae_widths: Autoencoder levels; each halves the latent grid's side.
        ae_steps, ae_batch_size, ae_lr: Autoencoder optimisation (batches of views).
        widths, layers_per_block, attention: The UNet, see :func:`build_multiview_unet`.
        steps, batch_size, lr: Diffusion optimisation (batches of objects, AdamW).
        p_uncond: Probability that a training object has no conditioning view.
        ema_decay: Largest decay of the weights' moving average (ramped up from 0).
        seed: Seeds the weights, the data order, the masks and the noise.
        checkpoint_every: Steps between checkpoints (both stages).
        resume: Continue from the newest checkpoints in ``output_dir/checkpoints``.
        cpu: Train on the CPU even when a GPU is present.
        progress: Show progress bars.

    Returns:
        ``output_dir``.

    Raises:
        ValueError: On invalid settings or data, or checkpoints made with other settings.

    Example:
        >>> from gdaload.datasets.multiview import MultiViewShapes
        >>> train_multiview(MultiViewShapes(100), "runs/multiview")  # doctest: +SKIP
        >>> MultiViewDiffusion.from_pretrained("runs/multiview")  # doctest: +SKIP
    """
    counts = {
        "ae_steps": ae_steps,
        "steps": steps,
        "batch_size": batch_size,
        "ae_batch_size": ae_batch_size,
        "checkpoint_every": checkpoint_every,
        "detail_channels": detail_channels,
        "layers_per_block": layers_per_block,
    }
    for name, value in counts.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0 <= p_uncond < 1:
        raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
    found_views, found_classes = _dataset_names(dataset)
    views = _views_tensor(dataset)
    n, v, c, h, w = views.shape
    down = 2 ** len(ae_widths)
    if h != w or h % down:
        raise ValueError(
            f"views must be square with a side divisible by {down} (2 ** "
            f"len(ae_widths)), got {h}x{w}; resize them or change ae_widths"
        )
    view_names = list(view_names or found_views or [f"view{i}" for i in range(v)])
    if len(view_names) != v:
        raise ValueError(f"got {len(view_names)} view_names for {v} views")
    class_names = list(class_names or found_classes or []) or None

    settings = {
        "views": v,
        "image": [c, h, w],
        "detail_channels": detail_channels,
        "ae_widths": list(ae_widths),
        "ae_batch_size": ae_batch_size,
        "ae_lr": ae_lr,
        "widths": list(widths),
        "layers_per_block": layers_per_block,
        "attention": attention,
        "batch_size": batch_size,
        "lr": lr,
        "p_uncond": p_uncond,
        "ema_decay": ema_decay,
        "seed": seed,
    }
    out = Path(output_dir)
    accelerator = Accelerator(cpu=cpu)
    checkpoints = _Checkpoints(out / "checkpoints", accelerator, settings)
    device = accelerator.device

    autoencoder = _train_autoencoder(
        views,
        out,
        checkpoints,
        accelerator,
        detail_channels,
        ae_widths,
        ae_steps,
        ae_batch_size,
        ae_lr,
        seed,
        checkpoint_every,
        resume,
        progress,
    )
    autoencoder.to(device).eval().requires_grad_(False)
    with torch.inference_mode():
        latents = torch.cat(
            [
                autoencoder.encode(views[i : i + 256].flatten(0, 1).to(device)).cpu()
                for i in range(0, n, 256)
            ]
        )
    latents = latents.view(n, v, *latents.shape[1:])

    with torch.random.fork_rng(devices=[]):  # weight init only; diffusers takes no generator
        torch.manual_seed(derive_seed(seed, Stream.MULTIVIEW_DIFFUSION))
        unet = build_multiview_unet(
            v, autoencoder.latent_channels, latents.shape[-1], widths, layers_per_block, attention
        )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
    )
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    ema = EMAModel(unet.parameters(), decay=ema_decay)
    step = 0
    state = checkpoints.latest("unet") if resume else None
    if state:
        unet.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        step = state["step"]
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema.to(device)

    bar = tqdm(total=steps, initial=step, disable=not progress, desc="multiview diffusion")
    while step < steps:
        index = _batches(n, batch_size, seed, Stream.MULTIVIEW_DIFFUSION, step, accelerator)
        rng = torch.Generator().manual_seed(derive_seed(seed, Stream.MULTIVIEW_DIFFUSION, 1, step))
        z = latents[index]
        observed = sample_condition_masks(len(z), v, rng, p_uncond)
        noise = torch.randn(z.shape, generator=rng)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(z),), generator=rng)
        noisy = scheduler.add_noise(z, noise, t)
        inputs = torch.where(observed[:, :, None, None, None], z, noisy)
        target = scheduler.get_velocity(z, noise, t)
        pred = unet(denoiser_input(inputs, observed).to(device), t.to(device)).sample
        loss = masked_diffusion_loss(pred.view_as(z), target.to(device), observed.to(device)).mean()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(accelerator.unwrap_model(unet).parameters())
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % checkpoint_every == 0 or step == steps:
            checkpoints.save(
                "unet",
                step,
                model=accelerator.unwrap_model(unet).state_dict(),
                optimizer=optimizer.state_dict(),
                ema=ema.state_dict(),
            )
    bar.close()

    final = accelerator.unwrap_model(unet)
    ema.copy_to(final.parameters())
    if accelerator.is_main_process:
        model = MultiViewDiffusion(
            final.to("cpu"),
            autoencoder.to("cpu"),
            scheduler,
            view_names=view_names,
            class_names=class_names,
            device="cpu",
        )
        model.save_pretrained(out, training={**settings, "ae_steps": ae_steps, "steps": steps})
    return out


def _train_autoencoder(
    views: torch.Tensor,
    out: Path,
    checkpoints: _Checkpoints,
    accelerator: Accelerator,
    detail_channels: int,
    widths: Sequence[int],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    checkpoint_every: int,
    resume: bool,
    progress: bool,
) -> ViewAutoencoder:
    """Stage 1: the autoencoder, saved to ``out/autoencoder`` with latent statistics that
    standardise its latents. A finished stage is loaded from there when resuming."""
    folder = out / "autoencoder"
    if resume and (folder / "config.json").is_file() and checkpoints.latest("autoencoder"):
        # Rebuilt from its config, not with from_pretrained, which would record this
        # folder in the config the finished generator is saved with: a resumed run saves
        # the same files as one run straight through.
        model = ViewAutoencoder.from_config(ViewAutoencoder.load_config(folder))
        model.load_state_dict(load_file(folder / SAFETENSORS_WEIGHTS_NAME))
        return model
    images = views.flatten(0, 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, Stream.MULTIVIEW_AUTOENCODER))
        model = ViewAutoencoder(images.shape[1], detail_channels, tuple(widths))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    step = 0
    state = checkpoints.latest("autoencoder") if resume else None
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    bar = tqdm(total=steps, initial=step, disable=not progress, desc="view autoencoder")
    while step < steps:
        index = _batches(
            len(images), batch_size, seed, Stream.MULTIVIEW_AUTOENCODER, step, accelerator
        )
        x = images[index].to(accelerator.device)
        # L1 is the negative log-likelihood of a Laplace decoder, as in the paper.
        loss = (model(x) - x).abs().mean()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(l1=f"{loss.item():.4f}")
        if step % checkpoint_every == 0 or step == steps:
            checkpoints.save(
                "autoencoder", step, model=raw.state_dict(), optimizer=optimizer.state_dict()
            )
    bar.close()

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
    return raw
