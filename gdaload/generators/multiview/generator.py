"""``MultiViewDiffusion``: generate the missing views of an object from the views observed.

The generator of DiMViDA (diffusion-based multi-view data augmentation): a
deterministic autoencoder (:class:`~gdaload.generators.multiview.autoencoder.ViewAutoencoder`)
maps each view to a latent, and a ``UNet2DModel`` denoises the channel-concatenation of
the latents of all ``V`` views of an object. Training uses multi-time masking (see
:mod:`gdaload.train.multiview`): a random subset of views stays clean as
the condition while the others are diffused. One mask channel per view (1 = observed,
0 = to generate) tells the UNet which views are given.

The paper passes a per-view time vector ``t * [view is missing]``; every missing view
shares one diffusion time, so that vector is fully described by the UNet's ordinary
timestep plus the mask channels, which is what is passed here.

Sampling starts the missing views from per-sample noise and runs any fast sampler of
:mod:`gdaload.generators.samplers`; before and after every step the observed views are
replaced by their clean latents, so they come through sampling bit for bit.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from gdaload.fingerprint import modules_fingerprint
from gdaload.generators.base import (
    MultiViewGenerator,
    StrengthLike,
    as_labels,
    as_seeds,
    check_source,
)
from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.samplers import SAMPLERS, make_scheduler
from gdaload.seeding import Stream, derive_rng

__all__ = [
    "MULTIVIEW_META",
    "MultiViewDiffusion",
    "ObservedLike",
    "build_multiview_unet",
    "denoiser_input",
]

#: File beside the ``unet``, ``autoencoder`` and ``scheduler`` folders of a saved model,
#: holding the view names, class names and how the model was trained.
MULTIVIEW_META = "multiview.json"

#: Which views are observed: view indices or names shared by the whole batch, or a
#: boolean mask ``(V,)`` or ``(B, V)`` (True = observed).
ObservedLike = Sequence[int | str] | torch.Tensor


def denoiser_input(latents: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """The UNet input: the ``V`` view latents stacked on channels, then one mask channel
    per view (1 where the view is observed and clean, 0 where it is diffused).

    Args:
        latents: ``(B, V, c, h, w)``.
        observed: Boolean ``(B, V)``.

    Returns:
        ``(B, V * c + V, h, w)``.
    """
    b, v, _, h, w = latents.shape
    mask = observed.to(latents.dtype)[:, :, None, None].expand(b, v, h, w)
    return torch.cat([latents.flatten(1, 2), mask], dim=1)


def build_multiview_unet(
    num_views: int,
    latent_channels: int,
    latent_size: int,
    widths: Sequence[int] = (48, 96),
    layers_per_block: int = 1,
    attention: bool = True,
) -> UNet2DModel:
    """A ``UNet2DModel`` over ``num_views`` concatenated latents plus their mask channels.

    Args:
        num_views: ``V``.
        latent_channels: Channels of one view's latent.
        latent_size: Side of the latent grid.
        widths: Channels of the UNet levels.
        layers_per_block: ResNet layers per level.
        attention: Self-attention at the last (coarsest) level.
    """
    last = ("AttnDownBlock2D",) if attention else ("DownBlock2D",)
    first = ("AttnUpBlock2D",) if attention else ("UpBlock2D",)
    levels = len(widths)
    return UNet2DModel(
        sample_size=latent_size,
        in_channels=num_views * latent_channels + num_views,
        out_channels=num_views * latent_channels,
        block_out_channels=tuple(widths),
        layers_per_block=layers_per_block,
        norm_num_groups=math.gcd(32, *widths),
        down_block_types=("DownBlock2D",) * (levels - 1) + last,
        up_block_types=first + ("UpBlock2D",) * (levels - 1),
    )


class MultiViewDiffusion(MultiViewGenerator):
    """Novel views of an object conditioned on any non-empty subset of its views.

    Two ways to use it:

    * :meth:`generate_views` completes a batch of objects: ``(B, V, C, H, W)`` views
      and which of them are observed -> all ``V`` views, the observed ones unchanged.
    * The :class:`~gdaload.Generator` contract, for test-time augmentation and other
      consumers of image-conditioned generators: ``generate(labels, seeds, source=x)``
      treats each ``source`` image as the object seen from :attr:`observed_view` and
      returns one novel view of it, the missing view picked by the sample's seed.
      :meth:`novel_views` returns all ``V - 1`` missing views of one joint sample.

    The model is not class-conditional: it needs no label, and ``labels`` passed to
    :meth:`generate` are only validated, never used (it is a
    :class:`~gdaload.generators.MultiViewGenerator`).

    Args:
        unet: Denoiser built by :func:`build_multiview_unet` (or with the same layout).
        autoencoder: The views' autoencoder.
        scheduler: The training noise schedule (a diffusers scheduler).
        view_names: One name per view, in the model's view order.
        observed_view: Index or name of the view that ``source`` images show in
            :meth:`generate` and :meth:`novel_views`.
        class_names: Classes of the training data; only sets :attr:`num_classes`.
        sampler: One of ``ddim``, ``dpm-solver++``, ``unipc``, ``euler``, ``ddpm``.
        steps: Sampler steps.
        device: Where to generate; default CUDA if available, else CPU.
        max_batch_size: Most objects sent to the UNet at once.
        model_id: Name recorded in :attr:`config`.

    Example:
        >>> gen = MultiViewDiffusion.from_pretrained("runs/multiview",
        ...                                          observed_view="back")  # doctest: +SKIP
        >>> views = gen.generate_views(objects, observed=["back"], seeds=[0, 1])  # doctest: +SKIP
        >>> views.shape  # doctest: +SKIP
        torch.Size([2, 4, 3, 32, 32])
        >>> # The front, left and right views of back-view images:
        >>> novel = gen.novel_views(back_images, seeds=[0, 1])  # doctest: +SKIP
    """

    def __init__(
        self,
        unet: UNet2DModel,
        autoencoder: ViewAutoencoder,
        scheduler: SchedulerMixin,
        *,
        view_names: Sequence[str] | None = None,
        observed_view: int | str = 0,
        class_names: Sequence[str] | None = None,
        sampler: str = "dpm-solver++",
        steps: int = 20,
        device: str | torch.device | None = None,
        max_batch_size: int = 256,
        model_id: str | None = None,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid samplers are {sorted(SAMPLERS)}")
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        latent_channels = autoencoder.latent_channels
        views, rest = divmod(unet.config.out_channels, latent_channels)
        if rest or views < 2 or unet.config.in_channels != views * (latent_channels + 1):
            raise ValueError(
                f"the UNet ({unet.config.in_channels} in, {unet.config.out_channels} out channels) "
                f"does not fit {latent_channels}-channel view latents: it needs "
                "V * latent_channels outputs and V * (latent_channels + 1) inputs; build it "
                "with build_multiview_unet"
            )
        self.num_views = views
        self.view_names = list(view_names) if view_names else [f"view{i}" for i in range(views)]
        if len(self.view_names) != views:
            raise ValueError(
                f"the model has {views} views but {len(self.view_names)} view_names were given"
            )
        self.class_names = list(class_names) if class_names else None
        self.num_classes = len(self.class_names) if self.class_names else 1
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.unet = unet.to(self._device).eval()
        self.autoencoder = autoencoder.to(self._device).eval()
        self.train_scheduler = scheduler
        self.sampler, self.steps = sampler, int(steps)
        self.scheduler = make_scheduler(sampler, scheduler)
        self.max_batch_size = int(max_batch_size)
        self.model_id = model_id or type(self).__name__
        self.observed_view = self.view_index(observed_view)
        size = unet.config.sample_size
        self.latent_size = size if isinstance(size, int) else size[0]
        side = self.latent_size * autoencoder.downsampling
        self.image_shape = (autoencoder.config.in_channels, side, side)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | os.PathLike, **meta: Any) -> Path:
        """Save to ``folder``: ``unet/``, ``autoencoder/`` and ``scheduler/`` as diffusers
        folders and :data:`MULTIVIEW_META` with the view names, class names and ``meta``."""
        out = Path(folder)
        self.unet.save_pretrained(out / "unet")
        self.autoencoder.save_pretrained(out / "autoencoder")
        self.train_scheduler.save_pretrained(out / "scheduler")
        info = {"view_names": self.view_names, "class_names": self.class_names, **meta}
        (out / MULTIVIEW_META).write_text(json.dumps(info, indent=2))
        return out

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs: Any) -> MultiViewDiffusion:
        """Load a folder written by :meth:`save_pretrained` or ``gdaload train-multiview``.

        ``kwargs`` go to the constructor (``observed_view``, ``sampler``, ``steps``, ...).

        Raises:
            FileNotFoundError: If the folder is not a saved multi-view model.
        """
        path = Path(folder)
        missing = [
            p
            for p in (MULTIVIEW_META, "unet", "autoencoder", "scheduler")
            if not (path / p).exists()
        ]
        if missing:
            raise FileNotFoundError(
                f"{path} is not a saved multi-view model (missing {missing}); train one with "
                "`gdaload train-multiview --output FOLDER` or MultiViewDiffusion.save_pretrained"
            )
        meta = json.loads((path / MULTIVIEW_META).read_text())
        kwargs.setdefault("view_names", meta.get("view_names"))
        kwargs.setdefault("class_names", meta.get("class_names"))
        kwargs.setdefault("model_id", os.fspath(folder))
        return cls(
            UNet2DModel.from_pretrained(path / "unet"),
            ViewAutoencoder.from_pretrained(path / "autoencoder"),
            DDPMScheduler.from_pretrained(path / "scheduler"),
            **kwargs,
        )

    # ------------------------------------------------------------------ contract
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def config(self) -> dict[str, Any]:
        return {
            "kind": "multiview-diffusion",
            "model": self.model_id,
            "weights": self.weights_fingerprint(),
            "sampler": self.sampler,
            "steps": self.steps,
            "view_names": self.view_names,
            "observed_view": self.observed_view,
            "image_shape": list(self.image_shape),
        }

    def weights_fingerprint(self) -> str:
        """Fingerprint of the UNet's and the autoencoder's weights."""
        return modules_fingerprint([("unet", self.unet), ("autoencoder", self.autoencoder)])

    def view_index(self, view: int | str) -> int:
        """Index of a view given by index or name.

        Raises:
            ValueError: For an unknown name or an index outside ``0..V-1``.
        """
        if isinstance(view, str):
            if view not in self.view_names:
                raise ValueError(f"unknown view {view!r}; this model's views are {self.view_names}")
            return self.view_names.index(view)
        if isinstance(view, bool) or not isinstance(view, int) or not 0 <= view < self.num_views:
            raise ValueError(
                f"view index {view!r} is outside 0..{self.num_views - 1}; this "
                f"model's views are {self.view_names}"
            )
        return view

    def generate(
        self,
        labels: torch.Tensor | Sequence[int],
        seeds: Sequence[int],
        *,
        source: torch.Tensor | None = None,
        strength: StrengthLike = 1.0,
    ) -> torch.Tensor:
        """One novel view per source image (the object seen from :attr:`observed_view`).

        Which of the ``V - 1`` missing views is returned is drawn from the sample's seed,
        so the result is a pure function of (model, config, source, seed).

        Args:
            labels: One label per sample; validated but not used.
            seeds: One seed per sample.
            source: ``(B, C, H, W)`` images in [0, 1] (or uint8): the observed views.
            strength: Must be 1: a view that was not observed has no source to stay
                close to, so partial (SDEdit) strengths have no meaning here.

        Returns:
            float32 ``(B, C, H, W)`` in [0, 1] on :attr:`device`.

        Raises:
            ValueError: Without ``source``, with a strength other than 1, or with source
                images whose shape differs from :attr:`image_shape`.
        """
        labels = as_labels(labels, self.num_classes)
        seeds = as_seeds(seeds, len(labels))
        if source is None:
            raise ValueError(
                "MultiViewDiffusion makes novel views of given objects: pass "
                "source= (images seen from the observed view); it does not sample "
                "objects of a class from a label"
            )
        if isinstance(strength, (tuple, list)) or float(strength) != 1.0:
            raise ValueError(
                f"strength must be 1 for novel-view synthesis, got {strength!r}; "
                "the missing views are always sampled from noise"
            )
        novel = self.novel_views(source, seeds)
        pick = torch.tensor(
            [int(derive_rng(s, Stream.VIEW_PICK).integers(self.num_views - 1)) for s in seeds],
            device=novel.device,
        )
        return novel[torch.arange(len(seeds), device=novel.device), pick]

    def novel_views(self, source: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """All views missing from ``source`` (seen from :attr:`observed_view`), sampled
        jointly: ``(B, V - 1, C, H, W)``, in view order without the observed view."""
        n = len(source) if isinstance(source, torch.Tensor) else len(seeds)
        source = check_source(source, self.image_shape, n).to(self.device)
        seeds = as_seeds(seeds, n)
        views = torch.zeros(len(seeds), self.num_views, *self.image_shape, device=self.device)
        views[:, self.observed_view] = source
        out = self.generate_views(views, [self.observed_view], seeds)
        keep = [v for v in range(self.num_views) if v != self.observed_view]
        return out[:, keep]

    # ------------------------------------------------------------------ multi-view
    def observed_mask(self, observed: ObservedLike, batch: int) -> torch.Tensor:
        """A boolean ``(batch, V)`` mask from view indices or names, or a mask.

        Raises:
            ValueError: If a view is unknown or out of range, or an object has no
                observed view.
        """
        if isinstance(observed, torch.Tensor) and observed.dtype == torch.bool:
            mask = observed.to("cpu")
            if mask.dim() == 1:
                mask = mask.expand(batch, -1)
            if mask.shape != (batch, self.num_views):
                raise ValueError(
                    f"an observed mask must have shape ({self.num_views},) or "
                    f"({batch}, {self.num_views}), got {tuple(observed.shape)}"
                )
        else:
            if isinstance(observed, (str, int)):
                items = [observed]
            else:
                items = observed.tolist() if isinstance(observed, torch.Tensor) else list(observed)
            mask = torch.zeros(batch, self.num_views, dtype=torch.bool)
            for view in items:
                mask[:, self.view_index(view)] = True
        empty = (~mask.any(1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"objects {empty[:10]} have no observed view; give at least one "
                f"view to condition on, e.g. observed=[0] ({self.view_names[0]!r})"
            )
        return mask.clone()

    @torch.inference_mode()
    def generate_views(
        self, views: torch.Tensor, observed: ObservedLike, seeds: Sequence[int]
    ) -> torch.Tensor:
        """Complete objects: generate the views that are not observed.

        Args:
            views: ``(B, V, C, H, W)`` in [0, 1] (or uint8); entries of views that are
                not observed are ignored (zeros are fine).
            observed: Which views are given, see :data:`ObservedLike`; at least one per
                object.
            seeds: One seed per object; the generated views depend only on the model,
                the config, the observed views and the seed.

        Returns:
            float32 ``(B, V, C, H, W)`` in [0, 1] on :attr:`device`; observed views are
            the input's, unchanged.

        Raises:
            ValueError: On a wrong shape, an unknown or out-of-range view, or an object
                without observed views.
        """
        if not isinstance(views, torch.Tensor) or views.dim() != 5:
            got = tuple(views.shape) if isinstance(views, torch.Tensor) else type(views).__name__
            raise ValueError(f"views must be a tensor (B, V, C, H, W), got {got}")
        b, v = views.shape[:2]
        if v != self.num_views:
            raise ValueError(
                f"views has {v} views per object but the model has {self.num_views} "
                f"({self.view_names}); pass every view slot, zeros for missing ones"
            )
        seeds = as_seeds(seeds, b)
        mask = self.observed_mask(observed, b)
        flat = check_source(views.flatten(0, 1), self.image_shape, b * v).to(self.device)
        images = flat.view(b, v, *self.image_shape).float()
        keep = mask.to(self.device)[:, :, None, None, None]
        images = torch.where(keep, images, torch.zeros((), device=self.device))
        out = torch.empty_like(images)
        for start in range(0, b, self.max_batch_size):
            chunk = slice(start, start + self.max_batch_size)
            latents = self.autoencoder.encode(images[chunk].flatten(0, 1))
            latents = latents.view(-1, v, *latents.shape[1:])
            sampled = self.sample_latents(latents, mask[chunk], seeds[chunk])
            decoded = self.autoencoder.decode(sampled.flatten(0, 1)).view(-1, v, *self.image_shape)
            out[chunk] = torch.where(keep[chunk], images[chunk], decoded)
        return out

    @torch.inference_mode()
    def sample_latents(
        self, latents: torch.Tensor, observed: torch.Tensor, seeds: Sequence[int]
    ) -> torch.Tensor:
        """Sample the unobserved view latents given the observed ones.

        Args:
            latents: ``(B, V, c, h, w)`` clean latents; unobserved entries are ignored.
            observed: Boolean ``(B, V)``.
            seeds: One seed per object: its starting noise (and the noise of stochastic
                samplers) comes from a CPU ``torch.Generator`` seeded with it.

        Returns:
            ``(B, V, c, h, w)``; the observed entries are exactly ``latents``'.
        """
        seeds = as_seeds(seeds, len(latents))
        clean = latents.to(self.device)
        keep = observed.to(self.device)[:, :, None, None, None]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        noise = torch.stack([torch.randn(clean.shape[1:], generator=g) for g in gens])
        noise = noise.to(self.device)
        scheduler = self.scheduler
        scheduler.set_timesteps(self.steps, device=self.device)
        step_kwargs = (
            {"generator": gens}
            if "generator" in inspect.signature(scheduler.step).parameters
            else {}
        )
        x = torch.where(keep, clean, noise * scheduler.init_noise_sigma)
        for t in scheduler.timesteps:
            # Observed views enter the UNet clean and unscaled, as in training; only the
            # diffused ones get the sampler's input scaling (e.g. Euler's 1/sqrt(sigma^2+1)).
            scaled = torch.where(keep, clean, scheduler.scale_model_input(x, t))
            inp = denoiser_input(scaled, observed.to(self.device))
            out = self.unet(inp, t.expand(len(x)).to(self.device)).sample.view_as(x)
            x = scheduler.step(out, t, x, **step_kwargs).prev_sample
            x = torch.where(keep, clean, x)
        return x

    def __repr__(self) -> str:
        return (
            f"MultiViewDiffusion(model={self.model_id!r}, views={self.view_names}, "
            f"observed_view={self.view_names[self.observed_view]!r}, sampler={self.sampler}, "
            f"steps={self.steps}, image_shape={self.image_shape}, device={self.device})"
        )
