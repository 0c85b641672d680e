"""Latent consistency distillation: a class-conditional generator that samples in 1-4 steps.

Follows diffusers' LCM distillation example (``train_lcm_distill_sd_wds.py``): the student
starts as a copy of the teacher; each step noises real images to a timestep ``t`` of a
skipping-step schedule, takes one DDIM step of the teacher from ``t`` to ``t - stride``,
and pulls the student's consistency function at ``t`` towards a target network's at
``t - stride`` with a pseudo-Huber loss. The consistency function is
``c_skip(t) * x_t + c_out(t) * x0(t)``, the boundary conditions of diffusers'
``LCMScheduler``, with ``x0`` clipped where the teacher's scheduler clips it (as
``LCMScheduler.step`` then does), so the saved model samples with that scheduler as it
is. The target network is a moving average of the student kept by the shared training
loop.

The result is saved like any generator (a diffusers folder with an ``LCMScheduler`` whose
schedule ends at the distilled top timestep) and records its settings under
``distillation`` in ``gdaload.json``; :meth:`gdaload.DiffusionGenerator.from_pretrained`
then samples it with ``sampler="lcm"`` in ``max_steps`` steps.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sized
from pathlib import Path
from typing import Any, cast

import torch
from accelerate import Accelerator
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from torch.utils.data import Dataset

from gdaload.data.policies import dataset_labels
from gdaload.generators import ClassConditionalPipeline
from gdaload.generators.hub import load_pipeline, locate_model
from gdaload.generators.metadata import read_metadata, write_metadata
from gdaload.generators.pipeline import denoiser_num_classes
from gdaload.seeding import Stream, derive_seed
from gdaload.train.batches import EpochBatches
from gdaload.train.checkpoints import Checkpoints
from gdaload.train.config import DistillConfig
from gdaload.train.generator import image_folder_dataset
from gdaload.train.loop import train_loop

__all__ = ["DISTILLATION_KEY", "distill", "distilled_scheduler"]

#: Key of the distillation settings in a distilled model's ``gdaload.json``.
DISTILLATION_KEY = "distillation"


def distilled_scheduler(betas: torch.Tensor, config: DistillConfig, **kwargs: Any) -> LCMScheduler:
    """The ``LCMScheduler`` of a model distilled with ``config`` from a teacher's ``betas``.

    Its training schedule is the teacher's, cut at the distilled top timestep, so the
    scheduler's own skipping-step schedule (``original_inference_steps`` timesteps
    ``stride - 1 ... top``) is the one the model was distilled on.

    Example:
        >>> from diffusers import DDPMScheduler
        >>> betas = DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas
        >>> lcm = distilled_scheduler(betas, DistillConfig())
        >>> lcm.set_timesteps(4)
        >>> lcm.timesteps.tolist()
        [959, 719, 479, 239]
    """
    length = config.top_timestep + 1
    if length > len(betas):
        raise ValueError(
            f"the schedule's top timestep {config.top_timestep} (solver_steps * stride - 1) "
            f"must be below the teacher's {len(betas)} training timesteps"
        )
    return LCMScheduler(
        num_train_timesteps=length,
        trained_betas=[float(b) for b in betas[:length]],
        original_inference_steps=config.solver_steps,
        timestep_scaling=config.timestep_scaling,
        prediction_type="epsilon",
        **kwargs,
    )


def _eps(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = cast(torch.Tensor, model(x, t, class_labels=y).sample)
    # DiT with learned sigma predicts (eps, variance); the consistency function needs eps.
    return out[:, : x.shape[1]] if out.shape[1] == 2 * x.shape[1] else out


def _load_teacher(teacher: str | os.PathLike[str]) -> tuple[ClassConditionalPipeline, Path]:
    path = locate_model(os.fspath(teacher))
    if DISTILLATION_KEY in read_metadata(path):
        raise ValueError(
            f"{teacher} is already a distilled model; distil its teacher (the model it "
            "was made from) instead"
        )
    pipe = load_pipeline(path)
    if not isinstance(pipe, ClassConditionalPipeline):
        raise ValueError(
            f"{teacher} is a {type(pipe).__name__}; distill() makes few-step versions of "
            "class-conditional generators. For text-to-image models use sampler='lcm' with "
            "published LCM-LoRA weights: DiffusionGenerator.from_pretrained(base, lcm_lora=...)"
        )
    if pipe.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError("the teacher must predict the noise (prediction_type='epsilon')")
    return pipe, path


def distill(
    teacher: str | os.PathLike[str],
    dataset: Dataset | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: DistillConfig | None = None,
    **options: Any,
) -> Path:
    """Distil a class-conditional generator into a few-step latent consistency model.

    Each step draws its batch from an epoch order seeded by ``(seed, epoch)`` and its noise
    and solver timesteps from a generator seeded by ``(seed, step)``; the target network
    is checkpointed with the student, so a resumed run ends with the same weights.

    Args:
        teacher: Folder (or hub id) of a class-conditional generator, e.g. one made by
            :func:`~gdaload.train.generator.train_generator`.
        dataset: ``(image, label)`` pairs with float images ``(C, H, W)`` in [0, 1] of the
            teacher's image size (its training data, or any images of its classes), or
            an image folder with one sub-folder per class (resized to the teacher's size).
        output_dir: Where the distilled model is saved; ``output_dir/checkpoints`` holds
            checkpoints for resuming.
        config: The settings; the defaults of :class:`DistillConfig` when None.
        **options: Fields of :class:`DistillConfig`, replacing ``config``'s.

    Returns:
        ``output_dir``, ready for ``DiffusionGenerator.from_pretrained`` (sampler
        ``lcm``, ``max_steps`` steps by default).

    Raises:
        ValueError: If the teacher is text-to-image or already distilled, on invalid
            settings, or checkpoints made with other settings.

    Example:
        >>> from gdaload.datasets.digits import digits_splits
        >>> distill("runs/gen", digits_splits().generator_pool, "runs/lcm")  # doctest: +SKIP
        >>> DiffusionGenerator.from_pretrained("runs/lcm").steps  # doctest: +SKIP
        4
    """
    config = DistillConfig.resolve(config, options)
    pipe, path = _load_teacher(teacher)
    data: Dataset
    if isinstance(dataset, (str, os.PathLike)):
        channels, size, _ = pipe.image_shape
        data = image_folder_dataset(dataset, size, channels)
    else:
        data = dataset
    if not isinstance(data, Sized) or len(data) == 0:
        raise ValueError("the distillation dataset must be a non-empty map-style dataset")
    labels = dataset_labels(data)
    classes = denoiser_num_classes(pipe.unet)
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(
            f"the teacher has {classes} classes, so labels must lie in 0..{classes - 1}; "
            f"the dataset's lie in {labels.min()}..{labels.max()}"
        )
    teacher_meta = read_metadata(path)
    base = pipe.scheduler
    betas = cast(torch.Tensor, cast(Any, base).betas)
    scheduler = distilled_scheduler(
        betas,
        config,
        clip_sample=bool(base.config.get("clip_sample", False)),
        clip_sample_range=float(base.config.get("clip_sample_range", 1.0)),
    )

    accelerator = Accelerator(cpu=config.cpu)
    device = accelerator.device
    frozen = pipe.unet.to(device).eval().requires_grad_(False)
    student = copy.deepcopy(frozen).train().requires_grad_(True)
    target = copy.deepcopy(frozen)
    encoder = pipe.to(device)
    alphas = cast(torch.Tensor, cast(Any, base).alphas_cumprod).to(device)
    solver = (torch.arange(1, config.solver_steps + 1) * config.stride - 1).to(device)
    batches = EpochBatches(data, config.batch_size, config.seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=0.0)

    clip = float(scheduler.config["clip_sample_range"]) if scheduler.config["clip_sample"] else None

    def consistency(
        model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """``c_skip(t) x + c_out(t) x0``, the model's estimate of the clean image."""
        a = alphas[t].view(-1, 1, 1, 1)
        x0 = (x - (1 - a).sqrt() * _eps(model, x, t, y)) / a.sqrt()
        if clip is not None:
            # LCMScheduler.step clips x0 so: the function distilled is the one it samples.
            x0 = x0.clamp(-clip, clip)
        # The scalings are elementwise, so they take a tensor of timesteps as well as one.
        scalings = cast(Any, scheduler).get_scalings_for_boundary_condition_discrete(t.float())
        c_skip, c_out = (cast(torch.Tensor, c).view(-1, 1, 1, 1) for c in scalings)
        return c_skip * x + c_out * x0

    def loss(model: torch.nn.Module, step: int) -> torch.Tensor:
        images, labels = batches(step)
        draws = torch.Generator().manual_seed(derive_seed(config.seed, Stream.DISTILL_NOISE, step))
        with torch.no_grad():
            x0 = encoder.encode_images(images.to(device)).float()
        y = labels.to(device).long()
        noise = torch.randn(x0.shape, generator=draws).to(device)
        index = torch.randint(0, config.solver_steps, (len(x0),), generator=draws).to(device)
        t = solver[index]
        prev = (t - config.stride).clamp(min=0)
        a = alphas[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        prediction = consistency(model, x_t, t, y)
        with torch.no_grad():
            # One DDIM step of the teacher from t to t - stride.
            eps = _eps(frozen, x_t, t, y)
            x0_teacher = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
            a_prev = alphas[prev].view(-1, 1, 1, 1)
            x_prev = a_prev.sqrt() * x0_teacher + (1 - a_prev).sqrt() * eps
            wanted = consistency(target, x_prev, prev, y)
        c = config.huber_c
        return (((prediction.float() - wanted.float()) ** 2 + c**2).sqrt() - c).mean()

    settings = {
        "teacher": path.name,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "solver_steps": config.solver_steps,
        "stride": config.stride,
        "target_decay": config.target_decay,
        "huber_c": config.huber_c,
        "timestep_scaling": config.timestep_scaling,
        "seed": config.seed,
    }
    out = Path(output_dir)
    final = train_loop(
        student,
        optimizer,
        loss,
        accelerator=accelerator,
        steps=config.steps,
        checkpoints=Checkpoints(out / "checkpoints", settings, config.checkpoint_every),
        resume=config.resume,
        ema_target=(target, config.target_decay),
        progress=config.progress,
        desc="distill",
    )

    if accelerator.is_main_process:
        result = ClassConditionalPipeline(
            unet=final.to("cpu").eval(), scheduler=scheduler, vae=encoder.vae
        )
        result.save_pretrained(out)
        _strip_local_paths(out)
        meta: dict[str, Any] = {
            key: teacher_meta[key] for key in ("class_names",) if key in teacher_meta
        }
        meta[DISTILLATION_KEY] = {
            "method": "latent-consistency",
            "steps": config.steps,
            "max_steps": config.max_steps,
            "top_timestep": config.top_timestep,
            **settings,
        }
        write_metadata(out, meta)
    accelerator.wait_for_everyone()
    return out


def _strip_local_paths(folder: Path) -> None:
    """Drop ``_name_or_path`` (the teacher's folder on this machine) from saved configs."""
    for config in folder.glob("*/config.json"):
        values = json.loads(config.read_text())
        if values.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
