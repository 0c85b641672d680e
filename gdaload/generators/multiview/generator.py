"""``MultiViewDiffusion``: generate the missing views of an object from the views observed.

The generator of DiMViDA (diffusion-based multi-view data augmentation): a
deterministic autoencoder (:class:`~gdaload.generators.multiview.autoencoder.ViewAutoencoder`)
maps each view to a latent, and a ``UNet2DModel`` denoises the channel-concatenation of
the latents of all ``V`` views of an object (see
:mod:`gdaload.generators.multiview.denoiser`). Training uses multi-time masking (see
:mod:`gdaload.train.multiview`): a random subset of views stays clean as
the condition while the others are diffused.

Sampling starts the missing views from per-sample noise and runs any fast sampler of
:mod:`gdaload.generators.samplers`; before and after every step the observed views are
replaced by their clean latents, so they come through sampling bit for bit.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any, cast

import torch
from diffusers.models.unets.unet_2d import UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from gdaload.generators.base import (
    MultiViewGenerator,
    StrengthLike,
    as_labels,
    as_seeds,
    check_source,
)
from gdaload.generators.diffusers_base import DiffusersGenerator
from gdaload.generators.multiview.autoencoder import ViewAutoencoder
from gdaload.generators.multiview.denoiser import build_multiview_unet, denoiser_input, views_of
from gdaload.generators.multiview.pipeline import MultiViewPipeline, load_multiview_folder
from gdaload.seeding import Stream, derive_rng

__all__ = [
    "MultiViewDiffusion",
    "ObservedLike",
    "build_multiview_unet",
    "denoiser_input",
]

#: Which views are observed: view indices or names shared by the whole batch, or a
#: boolean mask ``(V,)`` or ``(B, V)`` (True = observed).
ObservedLike = Sequence[int | str] | torch.Tensor


class MultiViewDiffusion(DiffusersGenerator[MultiViewPipeline], MultiViewGenerator):
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

    kind = "multiview-diffusion"

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
        views = views_of(unet, autoencoder.latent_channels)
        self.num_views = views
        self._view_names = list(view_names) if view_names else [f"view{i}" for i in range(views)]
        if len(self._view_names) != views:
            raise ValueError(
                f"the model has {views} views but {len(self._view_names)} view_names were given"
            )
        self.class_names = list(class_names) if class_names else None
        self.num_classes = len(self.class_names) if self.class_names else 1
        super().__init__(
            MultiViewPipeline(unet=unet, autoencoder=autoencoder, scheduler=scheduler),
            sampler=sampler,
            steps=steps,
            max_batch_size=max_batch_size,
            device=device,
            dtype=None,
            model_id=model_id or type(self).__name__,
        )
        self.observed_view = observed_view
        size = unet.config["sample_size"]
        self.latent_size: int = size if isinstance(size, int) else size[0]
        side = self.latent_size * autoencoder.downsampling
        self.image_shape = (autoencoder.config["in_channels"], side, side)

    # ------------------------------------------------------------------ modules and settings
    @property
    def unet(self) -> UNet2DModel:
        """The denoiser."""
        return self.pipeline.unet

    @property
    def autoencoder(self) -> ViewAutoencoder:
        """The views' autoencoder."""
        return self.pipeline.autoencoder

    @property
    def view_names(self) -> list[str]:
        """One name per view, in the model's view order."""
        return self._view_names

    @property
    def observed_view(self) -> int:
        """Index of the view that ``source`` images show in :meth:`generate` and
        :meth:`novel_views`; a view name may be assigned."""
        return self._observed_view

    @observed_view.setter
    def observed_view(self, view: int | str) -> None:
        self._observed_view = self.view_index(view)
        self._settings_changed()

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike[str], **kwargs: Any) -> MultiViewDiffusion:
        """Load a folder written by :meth:`save_pretrained` or ``gdaload train-multiview``
        (either layout, see :mod:`gdaload.generators.multiview.pipeline`).

        ``kwargs`` go to the constructor (``observed_view``, ``sampler``, ``steps``, ...);
        the saved view names, observed view and class names are their defaults.

        Raises:
            FileNotFoundError: If the folder is not a saved multi-view model.
        """
        pipe, meta = load_multiview_folder(folder)
        kwargs.setdefault("view_names", meta.get("view_names"))
        kwargs.setdefault("observed_view", meta.get("observed_view", 0))
        kwargs.setdefault("class_names", meta.get("class_names"))
        kwargs.setdefault("model_id", os.fspath(folder))
        # A loaded pipeline's scheduler is the diffusers scheduler it was saved with.
        return cls(pipe.unet, pipe.autoencoder, cast(SchedulerMixin, pipe.scheduler), **kwargs)

    def _metadata(self) -> dict[str, Any]:
        return {
            "view_names": self.view_names,
            "observed_view": self.view_names[self.observed_view],
            "class_names": self.class_names,
        }

    # ------------------------------------------------------------------ contract
    def _own_config(self) -> dict[str, Any]:
        return {"view_names": list(self.view_names), "observed_view": self.observed_view}

    def _fingerprinted_modules(self) -> list[tuple[str, torch.nn.Module]]:
        return [("unet", self.unet), ("autoencoder", self.autoencoder)]

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
        check_source(source, self.image_shape, len(labels))  # one source per label
        novel = self.novel_views(source, seeds)
        pick = torch.tensor(
            [int(derive_rng(s, Stream.VIEW_PICK).integers(self.num_views - 1)) for s in seeds],
            dtype=torch.long,
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
            items: list[int | str]
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
        for chunk in self._chunks(b):
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
