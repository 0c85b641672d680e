"""The GenMix transform: per-row Beta weights, real/synthetic pairing, mixup or cutmix.

See :mod:`gdaload.transforms.genmix` for the rule it applies and the paper behind it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast, overload

import numpy as np
import torch
import torch.utils.data

from gdaload.provenance import synthetic_rows
from gdaload.seeding import Stream, derive_rng
from gdaload.transforms.genmix.inputs import check_batch, check_mask, check_quality, soft_targets
from gdaload.transforms.genmix.record import MixRecord
from gdaload.transforms.genmix.sampling import cutmix_boxes, deal
from gdaload.transforms.genmix.soft_masks import mix_masks

__all__ = ["GenMix", "BETAS", "FALLBACKS", "MODES", "PAIRINGS", "SYNTHETIC_ROWS"]

PAIRINGS = ("real-synthetic", "real-union", "real-real")
MODES = ("mixup", "cutmix")
BETAS = ("paper", "symmetric")
SYNTHETIC_ROWS = ("mix", "keep")
FALLBACKS = ("mixup", "identity")

_STATE_KEYS = ("seed", "epoch", "enabled", "rng")


class GenMix:
    """Mix real samples with synthetic ones inside a batch, with soft targets.

    Drop-in for ``timm.data.Mixup``: ``genmix(x, target)`` returns
    ``(x_mixed, soft_target)``; the extra ``synthetic_mask`` argument says which rows
    are synthetic. The input batch is never modified; a mixed batch is a new tensor.

    **Mask.** Without ``synthetic_mask``, the mask is read from ``x`` (or ``target``)
    when a :class:`~gdaload.GenerativeLoader` yielded it, with or without
    ``return_mask`` (see :mod:`gdaload.provenance`). A tensor made from such a batch
    (``x.to(device)``, ``x.clone()``) or collated from a
    :class:`~gdaload.GenerativeDataset` carries no mark: its rows are all taken for
    real, and a synthetic pairing warns once that the batch gets the fallback. Pass the
    mask then, or an all-``False`` one for batches that truly hold no synthetic row.

    **Weights.** One ``lam`` is drawn per row, so a batch covers the whole Beta
    distribution instead of sharing one draw. ``lam`` always weights the *partner*
    and ``1 - lam`` the *anchor* (row ``i``'s output keeps row ``i``'s place). In
    ``real-synthetic`` pairing the partner is the synthetic sample, so ``lam`` weights
    the synthetic image exactly as in the paper's formula. ``beta="paper"`` draws
    ``lam ~ Beta(alpha, 1)`` (mean ``alpha / (alpha + 1)``); ``beta="symmetric"`` draws
    ``Beta(alpha, alpha)`` as in plain mixup.

    **Pairings** (``pairing``):

    * ``"real-synthetic"`` (the paper's): each real row is mixed with a synthetic
      partner. Partners are dealt from shuffled copies of the batch's synthetic
      samples, so every synthetic sample is used before any is reused.
    * ``"real-union"``: each real row is mixed with a partner drawn uniformly from all
      other rows, real or synthetic (the paper's mixup between real data and the union
      of real and synthetic data).
    * ``"real-real"``: plain mixup baseline. The mask is ignored and every row is
      mixed with a row of a random permutation of the batch; feed it real-only
      batches to reproduce the paper's baseline.

    **Synthetic rows** (``synthetic_rows``, synthetic pairings only). The batch keeps
    its size ``B`` and no row is dropped. With ``"mix"`` (default) a synthetic row ``j``
    becomes ``lam * x_j + (1 - lam) * x_R`` with a real anchor ``R`` dealt like the
    partners above: the synthetic sample stays in its row, but only ever inside a
    real-synthetic mixture, because raw synthetic images are what did not help in the
    paper. With ``"keep"`` synthetic rows pass through unmixed with their own
    (smoothed) one-hot targets, for when the raw synthetic images should be trained on
    too. Either way ``synthetic_mask`` still describes the output rows.

    **Quality-aware mixing** (``quality=`` in a call, ``synthetic_rows="mix"``). With a
    per-row score ``q`` in [0, 1], a synthetic row's own weight becomes
    ``q + (1 - q) * lam``: a sample scored 1 stays pure, one scored 0 is mixed as the
    paper mixes every sample. Real rows and their synthetic partners keep ``lam``.
    Without ``quality`` the paper's rule holds unchanged.

    **Fallback** (``fallback``). A synthetic pairing needs at least one real and one
    synthetic row. When a batch has none of one kind (mask ``None``, all ``False`` or
    all ``True``), ``"mixup"`` (default) applies plain ``real-real`` mixup to the batch
    so that augmentation strength does not depend on whether synthetic samples arrived,
    and ``"identity"`` passes the batch through with one-hot targets.

    **Cutmix** (``mode="cutmix"``): instead of blending, a box of about ``lam`` of the
    image area is pasted from the partner into the anchor; the box is clipped at the
    image border and the target weight is the pasted area actually covered (timm's
    ``correct_lam``), so ``lam`` still means the partner's share.

    **Targets.** ``target`` is either ``(B,)`` integer class indices or ``(B,
    num_classes)`` floating probability rows; the result is always ``(B,
    num_classes)`` on ``x.device``, float32 (float64 when ``x`` is float64), with label
    smoothing ``s`` applied like timm's ``mixup_target``: ``y * (1 - s) + s /
    num_classes``.

    **Randomness.** All draws come from a private NumPy generator keyed by ``(seed,
    epoch, worker)`` (NumPy, as torch has no Beta sampler that takes a generator and
    gdaload's seed plan is built on ``SeedSequence``), never from a global random
    state. ``lam`` and indices are drawn on the CPU and moved to ``x.device``, so
    results depend only on the seed and the call sequence, not on the device.
    ``set_epoch(e)`` restarts the stream at a position given by ``(seed, e)``. Inside a
    DataLoader worker the stream is keyed by the worker id as well, so workers holding
    pickled copies do not repeat each other's draws.

    Args:
        num_classes: Number of classes of the soft targets.
        alpha: Beta concentration ``alpha > 0``.
        beta: ``"paper"`` for ``Beta(alpha, 1)`` or ``"symmetric"`` for
            ``Beta(alpha, alpha)``.
        pairing: One of :data:`PAIRINGS`.
        mode: ``"mixup"`` or ``"cutmix"``.
        label_smoothing: Smoothing ``s`` in ``[0, 1)``.
        p: Probability in ``[0, 1]`` that a batch is mixed; unmixed batches get
            one-hot (smoothed) targets.
        seed: Non-negative seed; ``None`` draws one from OS entropy (readable
            afterwards as :attr:`seed`, so the run can be repeated).
        synthetic_rows: ``"mix"`` or ``"keep"``, see above.
        fallback: ``"mixup"`` or ``"identity"``, see above.

    Attributes:
        enabled: Set to ``False`` to pass batches through with one-hot targets, e.g.
            for the last epochs (``mixup_enabled`` is an alias, as in timm).
        last_mix: :class:`MixRecord` of the last call, ``None`` before the first.

    Example:
        >>> import torch
        >>> genmix = GenMix(num_classes=3, alpha=1.0, seed=0)
        >>> x = torch.rand(4, 3, 8, 8)
        >>> y = torch.tensor([0, 1, 2, 0])
        >>> synthetic = torch.tensor([False, False, True, True])
        >>> x_mixed, soft = genmix(x, y, synthetic)
        >>> x_mixed.shape, soft.shape
        (torch.Size([4, 3, 8, 8]), torch.Size([4, 3]))
        >>> bool(torch.allclose(soft.sum(dim=1), torch.ones(4)))
        True
        >>> genmix.last_mix.partner[:2].tolist() in ([2, 3], [3, 2])  # synthetic partners
        True
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 1.0,
        beta: str = "paper",
        pairing: str = "real-synthetic",
        mode: str = "mixup",
        label_smoothing: float = 0.0,
        p: float = 1.0,
        seed: int | None = None,
        synthetic_rows: str = "mix",
        fallback: str = "mixup",
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.alpha = _finite_float("alpha", alpha)
        if not self.alpha > 0:
            raise ValueError(
                f"alpha must be > 0 (the Beta concentration), got {alpha!r}; "
                "alpha=1.0 gives uniform lam"
            )
        self.beta = _choice("beta", beta, BETAS)
        self.pairing = _choice("pairing", pairing, PAIRINGS)
        self.mode = _choice("mode", mode, MODES)
        self.synthetic_rows = _choice("synthetic_rows", synthetic_rows, SYNTHETIC_ROWS)
        self.fallback = _choice("fallback", fallback, FALLBACKS)
        self.label_smoothing = _finite_float("label_smoothing", label_smoothing)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"label_smoothing must be in [0, 1), got {label_smoothing!r}; "
                "use 0.0 to turn it off"
            )
        self.p = _finite_float("p", p)
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(
                f"p is the probability that a batch is mixed and must be in [0, 1], got {p!r}"
            )
        if seed is None:
            # Without arguments SeedSequence draws its entropy, an int, from the OS.
            seed = cast(int, np.random.SeedSequence().entropy)
        elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.seed: int = seed
        self.enabled = True
        self.last_mix: MixRecord | None = None
        self._warned_unmarked = False
        self._epoch: int | None = None
        self._worker: int | None = None
        self._reseed()

    @property
    def mixup_enabled(self) -> bool:
        """Alias of :attr:`enabled` under the name training loops written for timm set."""
        return self.enabled

    @mixup_enabled.setter
    def mixup_enabled(self, value: bool) -> None:
        self.enabled = bool(value)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, alpha={self.alpha}, "
            f"beta={self.beta!r}, pairing={self.pairing!r}, mode={self.mode!r}, "
            f"label_smoothing={self.label_smoothing}, p={self.p}, seed={self.seed}, "
            f"synthetic_rows={self.synthetic_rows!r}, fallback={self.fallback!r})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Restart the random stream at the position determined by ``(seed, epoch)``.

        Makes each epoch reproducible on its own, e.g. after resuming from a
        checkpoint taken at an epoch boundary.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self._epoch = epoch
        self._reseed()

    def state_dict(self) -> dict[str, Any]:
        """Seed, epoch, ``enabled`` and the generator position, for checkpoints."""
        return {
            "seed": self.seed,
            "epoch": self._epoch,
            "enabled": self.enabled,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; later draws repeat the saved run's."""
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"state is missing {missing}; pass a dict made by GenMix.state_dict()")
        self.seed = int(state["seed"])
        self._epoch = None if state["epoch"] is None else int(state["epoch"])
        self.enabled = bool(state["enabled"])
        self._reseed()
        self._rng.bit_generator.state = state["rng"]

    def sample_lam(self, n: int) -> torch.Tensor:
        """Draw ``n`` values of ``lam`` from the configured Beta distribution.

        Advances the private generator, exactly as a call on a batch of ``n`` rows
        does before pairing.

        Returns:
            float64 CPU tensor of shape ``(n,)``.
        """
        second = 1.0 if self.beta == "paper" else self.alpha
        return torch.from_numpy(self._stream().beta(self.alpha, second, size=n))

    @overload
    def __call__(
        self,
        x: torch.Tensor,
        target: torch.Tensor | Sequence[Any],
        synthetic_mask: torch.Tensor | Sequence[bool] | None = None,
        *,
        quality: torch.Tensor | Sequence[float] | None = None,
        masks: None = None,
        num_mask_classes: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def __call__(
        self,
        x: torch.Tensor,
        target: torch.Tensor | Sequence[Any],
        synthetic_mask: torch.Tensor | Sequence[bool] | None = None,
        *,
        quality: torch.Tensor | Sequence[float] | None = None,
        masks: torch.Tensor,
        num_mask_classes: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def __call__(
        self,
        x: torch.Tensor,
        target: torch.Tensor | Sequence[Any],
        synthetic_mask: torch.Tensor | Sequence[bool] | None = None,
        *,
        quality: torch.Tensor | Sequence[float] | None = None,
        masks: torch.Tensor | None = None,
        num_mask_classes: int | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Mix a batch.

        Args:
            x: ``(B, C, H, W)`` floating batch, on any device.
            target: ``(B,)`` integer class indices or ``(B, num_classes)`` floating
                probability rows (a tensor, or a sequence of all ints or all rows).
            synthetic_mask: ``(B,)`` bool, ``True`` for synthetic rows; ``None`` reads
                the mask a :class:`~gdaload.GenerativeLoader` marked ``x`` (or
                ``target``) with, and means all real for a batch it did not yield
                (a synthetic pairing warns once, then).
            quality: Optional ``(B,)`` scores in [0, 1]; a synthetic row's own weight
                becomes ``q + (1 - q) * lam`` (see *Quality-aware mixing*).
            masks: Optional ``(B, H, W)`` integer segmentation masks of the rows; they
                are mixed as soft masks with the images' weights (one-hot masks mixed
                like mixup's images, pasted like cutmix's boxes; see
                :func:`~gdaload.transforms.genmix.soft_masks.mix_masks`).
            num_mask_classes: The labels ``0..K-1`` masks may hold (needed with
                ``masks``): the soft masks' channels.

        Returns:
            ``(x_mixed, soft_target)``: ``x_mixed`` has the shape, dtype and device of
            ``x`` (it is ``x`` itself when the batch is not mixed); ``soft_target`` is
            ``(B, num_classes)``. With ``masks``: ``(x_mixed, soft_target,
            soft_masks)``, ``soft_masks`` ``(B, K, H, W)`` summing to 1 over ``K``.

        Raises:
            ValueError: For a malformed ``x``, ``target``, ``synthetic_mask`` or
                ``quality``.
        """
        check_batch(x)
        n = x.shape[0]
        q = None if quality is None else check_quality(quality, n)
        target_dtype = torch.promote_types(x.dtype, torch.float32)
        y = soft_targets(target, n, self.num_classes, self.label_smoothing, x.device, target_dtype)
        if synthetic_mask is None:
            synthetic_mask = self._marked_mask(x, target, n)
        mask = check_mask(synthetic_mask, n)

        pairing = self._pairing(mask) if self.enabled and self._draw_apply() else "identity"
        if pairing == "identity":
            identity = torch.arange(n)
            self.last_mix = MixRecord(
                identity, identity.clone(), torch.zeros(n, dtype=torch.float64), None, "identity"
            )
            return self._with_masks(x, y, masks, num_mask_classes)

        anchor, partner, lam = self._pair(mask, pairing)
        if q is not None and pairing != "real-real" and self.synthetic_rows == "mix":
            # A synthetic row is its own partner: lam is its own weight.
            lam[mask] = q[mask] + (1 - q[mask]) * lam[mask]
        anchor_dev = torch.from_numpy(anchor).to(x.device)
        partner_dev = torch.from_numpy(partner).to(x.device)
        box = None
        if self.mode == "mixup":
            # Rounded to the batch dtype on the CPU, so that the label weights below
            # are the weights the images actually got, with no device round trip.
            weight = torch.from_numpy(lam).to(x.dtype)
            w = weight.to(x.device).view(-1, 1, 1, 1)
            x_mixed = x[anchor_dev] * (1 - w) + x[partner_dev] * w
            applied = weight.double()
        else:
            box, inside, applied = cutmix_boxes(
                self._stream(), lam, x.shape[-2], x.shape[-1], x.device
            )
            x_mixed = torch.where(inside, x[partner_dev], x[anchor_dev])
        wt = applied.to(target_dtype).to(x.device).view(-1, 1)
        y_mixed = y[anchor_dev] * (1 - wt) + y[partner_dev] * wt
        self.last_mix = MixRecord(
            torch.from_numpy(anchor), torch.from_numpy(partner), applied, box, pairing
        )
        return self._with_masks(x_mixed, y_mixed, masks, num_mask_classes)

    def _with_masks(
        self, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor | None, k: int | None
    ) -> tuple[torch.Tensor, ...]:
        if masks is None:
            return x, y
        assert self.last_mix is not None  # recorded by the call just made
        return x, y, mix_masks(self.last_mix, masks, k, x)

    def _marked_mask(
        self, x: torch.Tensor, target: torch.Tensor | Sequence[Any], n: int
    ) -> torch.Tensor | None:
        """The synthetic mask ``x`` or ``target`` was marked with; ``None`` (all real)
        when neither was, after warning once if the pairing needs synthetic rows."""
        for tensor in (x, target):
            rows = synthetic_rows(tensor) if torch.is_tensor(tensor) else None
            # A mark of another length belongs to a tensor resized in place since.
            if rows is not None and rows.shape == (n,):
                return rows
        if self.pairing != "real-real" and self.enabled and not self._warned_unmarked:
            self._warned_unmarked = True
            fallback = "plain mixup" if self.fallback == "mixup" else "no mixing"
            warnings.warn(
                f"GenMix(pairing={self.pairing!r}) got no synthetic_mask and a batch that "
                "a GenerativeLoader did not yield (e.g. one moved with .to(device)), so "
                f"every row is taken for real and the batch gets the fallback ({fallback}). "
                "Pass synthetic_mask= (GenerativeLoader(return_mask=True) yields it), or, if "
                "the batch really has no synthetic rows, "
                "synthetic_mask=torch.zeros(B, dtype=torch.bool) to silence this warning. "
                "It is shown once per GenMix.",
                UserWarning,
                stacklevel=3,
            )
        return None

    def _reseed(self) -> None:
        # Fixed-length keys with 0 meaning "unset" so that no (epoch, worker)
        # combination can collide with another.
        epoch_key = 0 if self._epoch is None else self._epoch + 1
        worker_key = 0 if self._worker is None else self._worker + 1
        self._rng = derive_rng(self.seed, Stream.GENMIX, epoch_key, worker_key)

    def _stream(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        worker = None if info is None else info.id
        if worker != self._worker:
            # Every worker receives a pickled copy holding the same generator state;
            # without this they would all draw identical lam sequences.
            self._worker = worker
            self._reseed()
        return self._rng

    def _draw_apply(self) -> bool:
        if self.p >= 1.0:
            return True
        if self.p <= 0.0:
            return False
        return bool(self._stream().random() < self.p)

    def _pairing(self, mask: np.ndarray) -> str:
        """The pairing for this batch, after the fallback for a missing kind of row."""
        if self.pairing == "real-real" or (mask.any() and not mask.all()):
            return self.pairing
        return "real-real" if self.fallback == "mixup" else "identity"

    def _pair(self, mask: np.ndarray, pairing: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = mask.shape[0]
        lam = self.sample_lam(n).numpy()
        rng = self._stream()
        anchor = np.arange(n)
        if pairing == "real-real":
            return anchor, rng.permutation(n), lam

        partner = np.arange(n)
        real = np.flatnonzero(~mask)
        synthetic = np.flatnonzero(mask)
        if pairing == "real-synthetic":
            partner[real] = deal(rng, synthetic, real.size)
        else:
            # Offsets in [1, n - 1] pick uniformly among the other rows.
            partner[real] = (real + rng.integers(1, n, size=real.size)) % n
        if self.synthetic_rows == "mix":
            anchor[synthetic] = deal(rng, real, synthetic.size)
        else:
            lam[synthetic] = 0.0
        return anchor, partner, lam


def _finite_float(name: str, value: Any) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return result


def _choice(name: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        valid_list = ", ".join(map(repr, valid))
        raise ValueError(f"unknown {name} {value!r}; valid values are {valid_list}")
    return value
