"""MixRecord: how GenMix mixed one batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MixRecord"]


@dataclass(frozen=True)
class MixRecord:
    """How one batch was mixed, as kept on ``GenMix.last_mix``.

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
        pairing: The pairing actually applied: one of
            :data:`~gdaload.transforms.genmix.transform.PAIRINGS`, or
            ``"identity"`` when the batch was passed through unmixed.

    Example:
        >>> identity = torch.arange(3)
        >>> record = MixRecord(identity, identity.clone(), torch.zeros(3), None, "identity")
        >>> record.pairing, record.box is None
        ('identity', True)
    """

    anchor: torch.Tensor
    partner: torch.Tensor
    lam: torch.Tensor
    box: torch.Tensor | None
    pairing: str
