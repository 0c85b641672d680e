"""The masked objective of multi-view diffusion training (DiMViDA's multi-time masking).

* With probability ``p_uncond`` (0.2 in the paper) no view conditions and every view is
  diffused;
* otherwise the set of conditioning views C is drawn uniformly among the non-empty
  proper subsets of the views, C stays clean (diffusion time 0) and the missing views M
  are diffused to a common time t;
* the prediction error counts on the diffused views only, weighted by ``1 + |C| / |M|``
  so that an object's loss does not shrink with the number of views it conditions on.
"""

from __future__ import annotations

import torch

__all__ = ["condition_weight", "masked_diffusion_loss", "sample_condition_masks"]


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

    Example:
        >>> condition_weight(torch.tensor([[True, False, False, False], [False] * 4]))
        tensor([1.3333, 1.0000])
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

    Example:
        >>> target = torch.zeros(1, 2, 1, 1, 1)
        >>> masked_diffusion_loss(target + 1, target, torch.tensor([[True, False]]))
        tensor([1.])
    """
    diffused = (~observed).to(prediction.dtype).view(*observed.shape, *[1] * (prediction.dim() - 2))
    error = ((prediction - target) ** 2 * diffused).flatten(1).mean(1)
    return error * condition_weight(observed).to(error.device)
