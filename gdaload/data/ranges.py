"""Real and synthetic inputs on the same scale, checked once on the first merged batch.

Generators return images in [0, 1]. Real inputs often arrive normalised (to [-1, 1],
with ImageNet mean and std) or as 0-255 values; merged as they are, the model would see
two scales and nothing would say so. One min/max over the first batch that holds both
catches that, and costs nothing afterwards.
"""

from __future__ import annotations

import torch

__all__ = ["check_same_scale"]

# A scale shows in its sign (normalised data goes below 0) and its size (0-255 data and
# standardised data go above 1). The slack keeps dark or bright batches and rounding of
# float kernels from looking like another scale.
_NEGATIVE = -0.05
_LARGE = 1.5


def check_same_scale(real: torch.Tensor, synthetic: torch.Tensor, who: str) -> None:
    """Raise unless ``real`` and ``synthetic`` inputs lie on the same value scale.

    Args:
        real: Real inputs as the loader yields them.
        synthetic: Synthetic inputs after the wrapper's ``synthetic_transform``, before
            any cast to the real inputs' dtype.
        who: The wrapper's name, for the message.

    Raises:
        ValueError: When one set goes below 0 or above 1.5 and the other does not,
            naming both ranges and the fix.

    Example:
        >>> check_same_scale(torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2), "X")
        >>> check_same_scale(torch.rand(4, 1, 2, 2) * 2 - 1, torch.rand(4, 1, 2, 2), "X")
        Traceback (most recent call last):
        ...
        ValueError: X: real inputs have values in [...
    """
    if not real.numel() or not synthetic.numel():
        return
    r_lo, r_hi = float(real.min()), float(real.max())
    s_lo, s_hi = float(synthetic.min()), float(synthetic.max())
    if (r_lo < _NEGATIVE) == (s_lo < _NEGATIVE) and (r_hi > _LARGE) == (s_hi > _LARGE):
        return
    raise ValueError(
        f"{who}: real inputs have values in [{r_lo:.3g}, {r_hi:.3g}] but synthetic ones in "
        f"[{s_lo:.3g}, {s_hi:.3g}]: two scales would be mixed in one batch. Generators "
        "return [0, 1]; give the synthetic samples the real data's normalisation, e.g. "
        "synthetic_transform=v2.Normalize(mean, std) (v2.Normalize([0.5], [0.5]) for "
        "[-1, 1]), or normalise real and synthetic inputs together after the wrapper"
    )
