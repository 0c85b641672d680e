"""Pictures for judging generated training data: sample grids, t-SNE maps, ratio curves,
and the loss curve of a generator's training.

Numbers alone hide failure modes that a look reveals at once: a class the generator
cannot draw, synthetic samples that sit apart from the real ones in the classifier's
feature space, or accuracy that falls once synthetic samples outnumber real ones (an
optimal ratio m_G* exists; more is not always better). Every function writes one PNG
file through matplotlib's Agg canvas (no display, no pyplot state) and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gdaload.metrics.features import FeatureArray, as_feature_matrix

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["accuracy_vs_ratio", "loss_curve", "sample_grid", "tsne_map", "view_grid"]

#: Pixels between the tiles of a sample grid, and between its real and generated halves.
_GAP, _BLOCK_GAP = 1, 4


def _new_figure(width: float, height: float) -> Figure:
    # Imported here so that importing gdaload.metrics.plots does not load matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png", bbox_inches="tight")
    return out


def _labels(labels: torch.Tensor | Sequence[int] | np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(torch.as_tensor(labels).detach().cpu()).reshape(-1)
    if len(arr) != n:
        raise ValueError(f"got {len(arr)} {name} for {n} samples")
    if not np.issubdtype(arr.dtype, np.integer) or (len(arr) and arr.min() < 0):
        raise ValueError(f"{name} must be non-negative integer class indices, got {arr.dtype}")
    return arr.astype(np.int64)


def _as_images(images: torch.Tensor, name: str) -> np.ndarray:
    t = torch.as_tensor(images).detach().cpu()
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be (N, 1 or 3, H, W) images, got shape {tuple(t.shape)}")
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    return t.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    if len(class_names) < num_classes:
        raise ValueError(f"got {len(class_names)} class names for labels up to {num_classes - 1}")
    return [str(n) for n in class_names]


def sample_grid(
    real: torch.Tensor,
    real_labels: torch.Tensor | Sequence[int],
    generated: torch.Tensor,
    generated_labels: torch.Tensor | Sequence[int],
    path: str | Path,
    *,
    per_class: int = 8,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """One row per class: real images on the left, generated ones on the right.

    The first ``per_class`` images of each class are shown; a class with fewer images
    leaves its remaining tiles blank.

    Args:
        real: ``(N, C, H, W)`` real images in [0, 1] (or uint8), ``C`` 1 or 3.
        real_labels: ``(N,)`` classes of ``real``.
        generated: ``(M, C, H, W)`` generated images of the same size.
        generated_labels: ``(M,)`` classes they were generated for.
        path: PNG file to write.
        per_class: Images of each source per class.
        class_names: Row labels (default: class indices).
        title: Optional figure title.
        dpi: Resolution of the file.

    Returns:
        The path written.

    Raises:
        ValueError: On shapes that differ, labels of the wrong length, or ``per_class < 1``.

    Example:
        >>> x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> sample_grid(x, [0, 1, 2] * 2, x, [0, 1, 2] * 2, "grid.png")  # doctest: +SKIP
        PosixPath('grid.png')
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    sets = [_as_images(real, "real"), _as_images(generated, "generated")]
    if sets[0].shape[1:] != sets[1].shape[1:]:
        raise ValueError(
            f"real images are {sets[0].shape[1:]} but generated ones are "
            f"{sets[1].shape[1:]} (H, W, C); resize one set"
        )
    labels = [
        _labels(real_labels, len(sets[0]), "real_labels"),
        _labels(generated_labels, len(sets[1]), "generated_labels"),
    ]
    num_classes = int(max((lab.max() + 1 for lab in labels if len(lab)), default=0))
    if num_classes == 0:
        raise ValueError("no images to draw: both sets are empty")
    names = _class_names(class_names, num_classes)
    h, w, c = sets[0].shape[1:]
    half = per_class * (w + _GAP)
    # White canvas; tiles are pasted at fixed slots so missing images stay blank.
    canvas = np.ones((num_classes * (h + _GAP), 2 * half + _BLOCK_GAP, c), dtype=np.float32)
    for side, (images, labs) in enumerate(zip(sets, labels, strict=True)):
        left = side * (half + _BLOCK_GAP)
        for cls in range(num_classes):
            for k, i in enumerate(np.flatnonzero(labs == cls)[:per_class]):
                top, x0 = cls * (h + _GAP), left + k * (w + _GAP)
                canvas[top : top + h, x0 : x0 + w] = images[i]
    fig = _tiled_figure(
        canvas,
        (max(4.0, canvas.shape[1] / h * 0.45), max(2.5, num_classes * 0.45 + 0.8)),
        [cls * (h + _GAP) + h / 2 - 0.5 for cls in range(num_classes)],
        names[:num_classes],
        [half / 2, half + _BLOCK_GAP + half / 2],
        ["real", "generated"],
        title,
    )
    return _save(fig, path, dpi)


def _tiled_figure(
    canvas: np.ndarray,
    size: tuple[float, float],
    yticks: list[float],
    ylabels: list[str],
    xticks: list[float],
    xlabels: list[str],
    title: str | None,
) -> Figure:
    """A figure showing a canvas of tiles, labelled by row and by column block."""
    fig = _new_figure(*size)
    ax = fig.add_subplot()
    gray = canvas.shape[-1] == 1
    ax.imshow(
        canvas[..., 0] if gray else canvas,
        cmap="gray" if gray else None,
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.set_yticks(yticks, ylabels)
    ax.set_xticks(xticks, xlabels)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, pad=20)
    return fig


def view_grid(
    images: torch.Tensor,
    generated: torch.Tensor,
    views: torch.Tensor | Sequence[int],
    path: str | Path,
    *,
    view_names: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """One row per input: the observed image, then the views generated from it.

    Args:
        images: ``(N, C, H, W)`` observed images in [0, 1] (or uint8), ``C`` 1 or 3.
        generated: ``(N, K, C, H, W)`` views generated from each.
        views: ``(N,)`` index of the view each image shows (row labels).
        path: PNG file to write.
        view_names: Names of the view indices (default: the indices).
        title: Optional figure title.
        dpi: Resolution of the file.

    Returns:
        The path written.

    Raises:
        ValueError: On shapes that differ or a view index without a name.

    Example:
        >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> view_grid(x, x[:, None].expand(2, 3, 3, 8, 8), [0, 1], "views.png")  # doctest: +SKIP
        PosixPath('views.png')
    """
    observed = _as_images(images, "images")
    n, (h, w, c) = len(observed), observed.shape[1:]
    if generated.dim() != 5 or len(generated) != n:
        raise ValueError(
            f"generated must be (N={n}, K, C, H, W) views, got {tuple(generated.shape)}"
        )
    novel = _as_images(generated.flatten(0, 1), "generated").reshape(n, -1, h, w, c)
    index = _labels(views, n, "views")
    names = _class_names(view_names, int(index.max()) + 1 if n else 0)
    k = novel.shape[1]
    canvas = np.ones((n * (h + _GAP), w + _BLOCK_GAP + k * (w + _GAP), c), dtype=np.float32)
    for row in range(n):
        top = row * (h + _GAP)
        canvas[top : top + h, :w] = observed[row]
        for j in range(k):
            x0 = w + _BLOCK_GAP + j * (w + _GAP)
            canvas[top : top + h, x0 : x0 + w] = novel[row, j]
    fig = _tiled_figure(
        canvas,
        (max(3.0, canvas.shape[1] / w * 0.6), max(2.5, n * 0.6 + 0.8)),
        [row * (h + _GAP) + h / 2 - 0.5 for row in range(n)],
        [names[v] for v in index],
        [w / 2, w + _BLOCK_GAP + k * (w + _GAP) / 2],
        ["observed", "generated"],
        title,
    )
    return _save(fig, path, dpi)


def tsne_map(
    real_features: FeatureArray,
    real_labels: torch.Tensor | Sequence[int],
    generated_features: FeatureArray,
    generated_labels: torch.Tensor | Sequence[int],
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    perplexity: float = 30.0,
    random_state: int = 0,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """2-D t-SNE embedding of real and generated features, coloured by class.

    Real samples are drawn as dots, generated ones as crosses. Both sets are embedded
    together, so their relative positions are meaningful: generated samples far from
    every real cluster, or all on one spot, show up at a glance. The perplexity is
    lowered to ``(N - 1) / 3`` for small sets, as t-SNE requires.

    Args:
        real_features: ``(N, D)`` features of real samples (e.g. a classifier's
            penultimate layer, see :func:`~gdaload.metrics.penultimate`).
        real_labels: ``(N,)`` their classes.
        generated_features: ``(M, D)`` features of generated samples.
        generated_labels: ``(M,)`` the classes they were generated for.
        path: PNG file to write.
        class_names: Legend labels (default: class indices).
        perplexity: t-SNE perplexity.
        random_state: Seed of scikit-learn's ``TSNE`` (fixed for a reproducible map).
        title: Optional figure title.
        dpi: Resolution of the file.

    Returns:
        The path written.

    Raises:
        ValueError: On non-finite features, differing feature dimensions, labels of the
            wrong length, or fewer than 4 samples in all.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> real, fake = torch.randn(20, 5, generator=g), torch.randn(20, 5, generator=g)
        >>> tsne_map(real, [0, 1] * 10, fake, [0, 1] * 10, "tsne.png")  # doctest: +SKIP
        PosixPath('tsne.png')
    """
    from matplotlib.lines import Line2D
    from sklearn.manifold import TSNE

    real = as_feature_matrix(real_features, "real_features", torch.float64).cpu().numpy()
    fake = as_feature_matrix(generated_features, "generated_features", torch.float64).cpu().numpy()
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"feature dimensions differ: real {real.shape[1]}, generated "
            f"{fake.shape[1]}; embed both sets with the same model"
        )
    labels = np.concatenate(
        [
            _labels(real_labels, len(real), "real_labels"),
            _labels(generated_labels, len(fake), "generated_labels"),
        ]
    )
    n = len(labels)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 samples in all, got {n}")
    embedding = TSNE(
        n_components=2,
        perplexity=min(perplexity, (n - 1) / 3),
        init="pca",
        random_state=random_state,
    ).fit_transform(np.concatenate([real, fake]))
    names = _class_names(class_names, int(labels.max()) + 1)
    classes = np.unique(labels)
    cmap = _class_colours(len(names))
    fig = _new_figure(7.5, 6.0)
    ax = fig.add_subplot()
    is_real = np.arange(n) < len(real)
    for mask, marker, size in ((is_real, "o", 14), (~is_real, "x", 18)):
        ax.scatter(
            embedding[mask, 0],
            embedding[mask, 1],
            c=[cmap[c] for c in labels[mask]],
            marker=marker,
            s=size,
            linewidths=0.9,
            alpha=0.8,
        )
    handles = [
        Line2D([], [], linestyle="", marker="s", color=cmap[c], label=names[c]) for c in classes
    ]
    handles += [
        Line2D([], [], linestyle="", marker="o", color="0.3", label="real"),
        Line2D([], [], linestyle="", marker="x", color="0.3", label="generated"),
    ]
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {len(real)} real and {len(fake)} generated samples")
    return _save(fig, path, dpi)


def _class_colours(num_classes: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return [cmap(c % cmap.N) for c in range(num_classes)]


def accuracy_vs_ratio(
    ratios: Sequence[float],
    means: Sequence[float],
    half_widths: Sequence[float],
    path: str | Path,
    *,
    baseline: tuple[float, float] | None = None,
    points: Mapping[str, tuple[float, float, float]] | None = None,
    label: str = "GDA",
    baseline_label: str = "real only",
    ylabel: str = "test accuracy (%)",
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Accuracy against the synthetic-to-real ratio m_G/m_S, with confidence intervals.

    The ratio axis is logarithmic (base 2); the best ratio m_G* is marked. The baseline
    (real data only) is drawn as a horizontal line with its interval as a band; other
    arms are drawn slightly right of their ratio so that they do not hide the curve.

    Args:
        ratios: Ratios m_G/m_S (> 0) of the curve.
        means: Mean accuracy at each ratio.
        half_widths: Half-widths of the confidence intervals (NaN draws no bar).
        path: PNG file to write.
        baseline: ``(mean, half_width)`` of the real-only arm.
        points: Other arms as ``{name: (ratio, mean, half_width)}``, e.g. GenMix.
        label: Legend label of the curve.
        baseline_label: Legend label of the baseline.
        ylabel: Axis label (the values are plotted as given).
        title: Optional figure title.
        dpi: Resolution of the file.

    Returns:
        The path written.

    Raises:
        ValueError: If the sequences differ in length, are empty, or a ratio is not
            positive and finite.

    Example:
        >>> accuracy_vs_ratio([0.5, 1, 2], [80.0, 83.0, 82.0], [1.0, 1.2, 0.9],
        ...                   "ratio.png", baseline=(78.0, 1.1))  # doctest: +SKIP
        PosixPath('ratio.png')
    """
    r, m, hw = (np.asarray(v, dtype=np.float64) for v in (ratios, means, half_widths))
    if not (len(r) == len(m) == len(hw)) or len(r) == 0:
        raise ValueError(
            f"ratios, means and half_widths must be non-empty and of equal length, "
            f"got {len(r)}, {len(m)}, {len(hw)}"
        )
    if not np.all(np.isfinite(r) & (r > 0)):
        raise ValueError(f"ratios must be positive and finite (log axis), got {r.tolist()}")
    order = np.argsort(r)
    r, m, hw = r[order], m[order], np.nan_to_num(hw[order], nan=0.0)
    fig = _new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    if baseline is not None:
        mean, half = baseline
        ax.axhline(
            mean, color="0.35", linestyle="--", linewidth=1, label=f"{baseline_label} ({mean:.1f})"
        )
        if math.isfinite(half):
            ax.axhspan(mean - half, mean + half, color="0.35", alpha=0.15, linewidth=0)
    ax.errorbar(r, m, yerr=hw, marker="o", capsize=4, label=label)
    best = int(np.argmax(m))
    ax.plot(
        [r[best]],
        [m[best]],
        marker="*",
        markersize=15,
        color="C3",
        linestyle="",
        label=f"best m_G/m_S = {r[best]:g}",
    )
    for k, (name, (ratio, mean, half)) in enumerate((points or {}).items()):
        # Dodged sideways so that arms at the same ratio as the curve stay readable.
        ax.errorbar(
            [ratio * 2 ** (0.07 * (k + 1))],
            [mean],
            yerr=[half if math.isfinite(half) else 0.0],
            marker="D",
            capsize=4,
            linestyle="",
            color=f"C{k + 4}",
            label=name,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(r, [f"{v:g}" for v in r])
    ax.minorticks_off()
    ax.set_xlabel("synthetic per real sample, m_G/m_S")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


def loss_curve(
    losses: Sequence[float], path: str | Path, *, title: str | None = None, dpi: int = 150
) -> Path:
    """Training loss per optimiser step, with a moving average over about a tenth of the
    steps (a diffusion loss is noisy from step to step: the timesteps are random).

    Args:
        losses: The loss of each step, from the first.
        path: PNG file to write.
        title: Optional figure title.
        dpi: Resolution of the file.

    Returns:
        The path written.

    Raises:
        ValueError: If ``losses`` is empty.

    Example:
        >>> loss_curve([0.9, 0.5, 0.4], "loss.png")  # doctest: +SKIP
        PosixPath('loss.png')
    """
    values = np.asarray(losses, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no losses to plot")
    steps = np.arange(1, values.size + 1)
    fig = _new_figure(6.0, 3.5)
    ax = fig.add_subplot()
    ax.plot(steps, values, color="0.7", linewidth=0.8, label="loss")
    window = max(1, values.size // 10)
    if window > 1:
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, linewidth=1.5, label=f"mean of {window} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)
