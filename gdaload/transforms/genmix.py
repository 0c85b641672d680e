"""GenMix: mixup between the real and the synthetic samples of a training batch.

Adding diffusion-generated images to a training set does not by itself help much; the
GenMix paper (CT liver lesions, 3 classes) reports 72.0-75.9 accuracy from adding them
versus 72.3 on real data only, and 81.4 once every real image is mixed with a synthetic
one:

    x = lam * x_S + (1 - lam) * x_R,    y = lam * y_S + (1 - lam) * y_R,

with ``lam ~ Beta(alpha, 1)``. :class:`GenMix` applies that rule to collated batches
that carry a boolean ``synthetic_mask``, with the call shape of ``timm.data.Mixup``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.data

from gdaload.seeding import Stream, derive_rng

__all__ = ["GenMix", "MixRecord", "BETAS", "FALLBACKS", "MODES", "PAIRINGS", "SYNTHETIC_ROWS"]

PAIRINGS = ("real-synthetic", "real-union", "real-real")
MODES = ("mixup", "cutmix")
BETAS = ("paper", "symmetric")
SYNTHETIC_ROWS = ("mix", "keep")
FALLBACKS = ("mixup", "identity")

_STATE_KEYS = ("seed", "epoch", "enabled", "rng")


@dataclass(frozen=True)
class MixRecord:
    """How one batch was mixed, kept on :attr:`GenMix.last_mix`.

    For ``mixup``, output row ``i`` is
    ``x[anchor[i]] * (1 - lam[i]) + x[partner[i]] * lam[i]`` with ``lam`` cast to the
    batch dtype, and its soft target is mixed with the same weights. For ``cutmix``,
    row ``i`` is ``x[anchor[i]]`` with ``box[i]`` pasted from ``x[partner[i]]``, and
    ``lam[i]`` is the pasted fraction of the image.

    Attributes:
        anchor: ``(B,)`` int64 index of the sample weighted by ``1 - lam``; always a real
            sample in the synthetic pairings.
        partner: ``(B,)`` int64 index of the sample weighted by ``lam``; the synthetic
            sample in ``real-synthetic`` pairing.
        lam: ``(B,)`` float64 weight actually given to the partner (after rounding to
            the batch dtype; for cutmix the pasted area fraction). 0 for unmixed rows.
        box: ``(B, 4)`` int64 half-open pixel bounds ``(top, bottom, left, right)`` of
            the pasted box for cutmix, ``None`` for mixup.
        pairing: The pairing actually applied: one of :data:`PAIRINGS`, or
            ``"identity"`` when the batch was passed through unmixed.
    """

    anchor: torch.Tensor
    partner: torch.Tensor
    lam: torch.Tensor
    box: torch.Tensor | None
    pairing: str


class GenMix:
    """Mix real samples with synthetic ones inside a batch, with soft targets.

    Drop-in for ``timm.data.Mixup``: ``genmix(x, target)`` returns
    ``(x_mixed, soft_target)``; the extra ``synthetic_mask`` argument says which rows
    are synthetic. The input batch is never modified; a mixed batch is a new tensor.

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
    results depend only on the seed and the call sequence, not on the device. ``set_epoch(e)`` restarts the stream at a
    position given by ``(seed, e)``. Inside a DataLoader worker the stream is keyed by
    the worker id as well, so workers holding pickled copies do not repeat each
    other's draws.

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
            seed = int(np.random.SeedSequence().entropy)
        elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        self.seed: int = seed
        self.enabled = True
        self.last_mix: MixRecord | None = None
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

    def __call__(
        self,
        x: torch.Tensor,
        target: torch.Tensor | Sequence[Any],
        synthetic_mask: torch.Tensor | Sequence[bool] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch.

        Args:
            x: ``(B, C, H, W)`` floating batch, on any device.
            target: ``(B,)`` integer class indices or ``(B, num_classes)`` floating
                probability rows (a tensor, or a sequence of all ints or all rows).
            synthetic_mask: ``(B,)`` bool, ``True`` for synthetic rows; ``None`` means
                all real.

        Returns:
            ``(x_mixed, soft_target)``: ``x_mixed`` has the shape, dtype and device of
            ``x`` (it is ``x`` itself when the batch is not mixed); ``soft_target`` is
            ``(B, num_classes)``.

        Raises:
            ValueError: For a malformed ``x``, ``target`` or ``synthetic_mask``.
        """
        _check_batch(x)
        n = x.shape[0]
        target_dtype = torch.promote_types(x.dtype, torch.float32)
        y = self._soft_target(target, n, x.device, target_dtype)
        mask = _check_mask(synthetic_mask, n)

        pairing = self._pairing(mask) if self.enabled and self._draw_apply() else "identity"
        if pairing == "identity":
            identity = torch.arange(n)
            self.last_mix = MixRecord(
                identity, identity.clone(), torch.zeros(n, dtype=torch.float64), None, "identity"
            )
            return x, y

        anchor, partner, lam = self._pair(mask, pairing)
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
            box, inside, applied = self._boxes(lam, x.shape[-2], x.shape[-1], x.device)
            x_mixed = torch.where(inside, x[partner_dev], x[anchor_dev])
        wt = applied.to(target_dtype).to(x.device).view(-1, 1)
        y_mixed = y[anchor_dev] * (1 - wt) + y[partner_dev] * wt
        self.last_mix = MixRecord(
            torch.from_numpy(anchor), torch.from_numpy(partner), applied, box, pairing
        )
        return x_mixed, y_mixed

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
            partner[real] = _deal(rng, synthetic, real.size)
        else:
            # Offsets in [1, n - 1] pick uniformly among the other rows.
            partner[real] = (real + rng.integers(1, n, size=real.size)) % n
        if self.synthetic_rows == "mix":
            anchor[synthetic] = _deal(rng, real, synthetic.size)
        else:
            lam[synthetic] = 0.0
        return anchor, partner, lam

    def _boxes(
        self, lam: np.ndarray, height: int, width: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes of about ``lam`` of the area, their pixel masks and covered fractions."""
        rng = self._stream()
        n = lam.shape[0]
        side = np.sqrt(lam)
        cut_h = (height * side).astype(np.int64)
        cut_w = (width * side).astype(np.int64)
        cy = rng.integers(0, height, size=n)
        cx = rng.integers(0, width, size=n)
        top = np.clip(cy - cut_h // 2, 0, height)
        bottom = np.clip(cy + (cut_h + 1) // 2, 0, height)
        left = np.clip(cx - cut_w // 2, 0, width)
        right = np.clip(cx + (cut_w + 1) // 2, 0, width)
        box = torch.from_numpy(np.stack([top, bottom, left, right], axis=1).astype(np.int64))
        area = torch.from_numpy((bottom - top) * (right - left) / float(height * width))

        t, b, l, r = box.to(device).unbind(1)
        rows = torch.arange(height, device=device).view(1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, width)
        inside = (
            (rows >= t.view(-1, 1, 1))
            & (rows < b.view(-1, 1, 1))
            & (cols >= l.view(-1, 1, 1))
            & (cols < r.view(-1, 1, 1))
        )
        return box, inside.unsqueeze(1), area.to(torch.float64)

    def _soft_target(
        self,
        target: torch.Tensor | Sequence[Any],
        n: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Validate ``target`` and return smoothed probability rows ``(n, num_classes)``."""
        k = self.num_classes
        if not torch.is_tensor(target):
            target = _target_from_sequence(target, k)
        if target.shape[0:1] != (n,):
            raise ValueError(
                f"target has {target.shape[0] if target.ndim else 0} rows but x has {n}; "
                "pass one label (or one probability row) per sample"
            )
        if target.ndim == 1:
            if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
                raise ValueError(
                    f"1-D target must hold integer class indices, got dtype {target.dtype}; "
                    "use target.long() for class indices, or a (B, num_classes) float "
                    "tensor for soft labels"
                )
            if n:
                low, high = int(target.min()), int(target.max())
                if low < 0 or high >= k:
                    raise ValueError(
                        f"class indices must be in [0, {k - 1}] for num_classes={k}, got values "
                        f"in [{low}, {high}]; check num_classes or the dataset's labels"
                    )
            y = torch.zeros(n, k, dtype=dtype, device=device)
            y.scatter_(1, target.to(device=device, dtype=torch.int64).view(-1, 1), 1.0)
        elif target.ndim == 2:
            if not target.is_floating_point():
                raise ValueError(
                    f"2-D target must be floating probability rows, got dtype {target.dtype}; "
                    "call .float() on one-hot integer targets, or pass a 1-D tensor of "
                    "class indices"
                )
            if target.shape[1] != k:
                raise ValueError(
                    f"soft target must have shape ({n}, {k}) for num_classes={k}, got "
                    f"{tuple(target.shape)}"
                )
            _check_probability_rows(target, k)
            y = target.to(device=device, dtype=dtype)
        else:
            raise ValueError(
                f"target must be 1-D class indices (B,) or 2-D probability rows "
                f"(B, num_classes), got shape {tuple(target.shape)}"
            )
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + self.label_smoothing / k
        return y


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


def _deal(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
    """``count`` draws from ``pool``, dealt from shuffled copies so use stays balanced."""
    copies = -(-count // pool.size)
    return np.concatenate([rng.permutation(pool) for _ in range(copies)])[:count]


def _check_batch(x: Any) -> None:
    if not torch.is_tensor(x):
        raise ValueError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"x must have shape (B, C, H, W), got {tuple(x.shape)}; "
            "add the batch dimension with x.unsqueeze(0) for a single image"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"x must be a floating-point tensor, got dtype {x.dtype}; mixing integer "
            "images would truncate them, convert first (e.g. x.float() / 255)"
        )


def _check_mask(mask: torch.Tensor | Sequence[bool] | None, n: int) -> np.ndarray:
    if mask is None:
        return np.zeros(n, dtype=bool)
    mask = mask if torch.is_tensor(mask) else torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise ValueError(
            f"synthetic_mask must be a bool tensor (True = synthetic), got dtype {mask.dtype}; "
            "convert 0/1 flags with mask.bool()"
        )
    if mask.shape != (n,):
        raise ValueError(
            f"synthetic_mask must have shape ({n},), one flag per sample of x, got "
            f"{tuple(mask.shape)}"
        )
    return mask.cpu().numpy()


def _target_from_sequence(target: Sequence[Any], num_classes: int) -> torch.Tensor:
    """Turn a sequence of all class indices or all probability rows into a tensor.

    An element is a probability row when it has at least one dimension (list, tuple,
    array, tensor) and a class index when it is a scalar; a sequence holding both
    kinds is rejected because the two cannot be stacked without guessing.
    """
    if isinstance(target, (str, bytes)) or not isinstance(target, (Sequence, np.ndarray)):
        raise ValueError(
            f"target must be a tensor or a sequence of labels, got {type(target).__name__}"
        )
    items = list(target)
    if not items:
        return torch.zeros(0, dtype=torch.int64)
    is_row = [(item.ndim if torch.is_tensor(item) else np.ndim(item)) > 0 for item in items]
    if all(is_row):
        lengths = {len(item) for item in items}
        if lengths != {num_classes}:
            raise ValueError(
                f"soft label rows must each have num_classes={num_classes} entries, got "
                f"lengths {sorted(lengths)}"
            )
        return torch.stack([torch.as_tensor(item, dtype=torch.float64) for item in items])
    if any(is_row):
        rows = [i for i, row in enumerate(is_row) if row]
        hard = [i for i, row in enumerate(is_row) if not row]
        raise ValueError(
            f"target mixes class indices (positions {hard[:5]}) with soft label rows "
            f"(positions {rows[:5]}); use one form for the whole batch, e.g. one-hot the "
            "class indices"
        )
    return torch.as_tensor(items)


def _check_probability_rows(target: torch.Tensor, num_classes: int) -> None:
    values = target.detach().to(torch.float64)
    tolerance = max(1e-4, torch.finfo(target.dtype).eps * num_classes)
    sums = values.sum(dim=1)
    # Written so that NaN rows fail too.
    bad = ~((sums - 1.0).abs() <= tolerance) | (values < 0).any(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(
            f"soft target rows must be non-negative and sum to 1; rows {rows} sum to "
            f"{[round(float(sums[i]), 4) for i in rows]}. This usually means hard and soft "
            "labels were mixed in one batch: pass either a 1-D tensor of class indices "
            "or a (B, num_classes) tensor of probabilities"
        )
