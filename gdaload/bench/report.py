"""Reports of the benchmarks: markdown tables, strict JSON and the pictures beside them."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gdaload.bench.arms import BASELINE

__all__ = [
    "markdown",
    "view_markdown",
    "write_evaluation_report",
    "write_report",
    "write_view_report",
]


def markdown(report: dict[str, Any]) -> str:
    """The report of :func:`~gdaload.bench.evaluate.run_evaluation` as markdown.

    Args:
        report: The report.

    Returns:
        One table of arms and one of the generated samples' quality.
    """
    s = report["settings"]
    lines = [
        f"{report['description']}; {len(s['seeds'])} seeds, {s['epochs']} epochs, batch "
        f"{s['batch_size']} real images; mean ± 95% CI over seeds, gains paired by seed.",
        "",
        "| arm | m_G/m_S | test accuracy (%) | gain over real only | macro F1 (%) | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for name, (mean, half) in report["mean_ci95"].items():
        gain, gain_half = report["gain_vs_real_ci95"][name]
        f1, f1_half = report["macro_f1_ci95"][name]
        ratio = report["ratios"].get(name)
        lines.append(
            f"| {name.split(' m_G/m_S=')[0]} | {'' if ratio is None else f'{ratio:g}'} | "
            f"{100 * mean:.2f} ± {100 * half:.2f} | "
            f"{'' if name == BASELINE else f'{100 * gain:+.2f} ± {100 * gain_half:.2f}'} | "
            f"{100 * f1:.2f} ± {100 * f1_half:.2f} | {report['seconds'][name]:.1f} |"
        )
    lines += ["", f"Best GDA ratio m_G* = {report['best_ratio']:g} of {s['ratios']}.", ""]
    q = report["generated_quality_ci95"]
    # KID is the small-sample fallback: with enough samples for FID it adds only noise.
    keys = ["FID" if "FID" in q else "KID", "precision", "recall", "coherence"]
    lines += [
        f"{s['quality_samples']} generated images per seed against the test images, in the "
        "penultimate features of the seed's real-only classifier:",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        "| " + " | ".join(f"{q[k][0]:.3g} ± {q[k][1]:.2g}" for k in keys) + " |",
    ]
    return "\n".join(lines)


def view_markdown(report: dict[str, Any]) -> str:
    """The 2x2 table of :func:`~gdaload.bench.views.run_view_evaluation` as markdown.

    Args:
        report: The report.

    Returns:
        The table, with the paired effect of averaging.
    """
    s = report["settings"]

    def cell(mean_half: tuple[float, float], sign: bool = False) -> str:
        mean, half = mean_half
        return f"{100 * mean:{'+' if sign else ''}.2f} ± {100 * half:.2f}"

    lines = [
        (
            f"{report['description']}; {len(s['seeds'])} seeds, {s['epochs']} epochs, batch "
            f"{s['batch_size']} real images; mean ± 95% CI over seeds, averaging gain paired by "
            "seed."
        ),
        "",
        (
            "| classifier trained on | test: single view (%) | test: averaged over the real view "
            f"and {s['generated_views']} generated (%) | averaging gain (points) |"
        ),
        "|---|---|---|---|",
    ]
    for arm, cells in report["mean_ci95"].items():
        lines.append(
            f"| {arm} | {cell(cells['single'])} | {cell(cells['averaged'])} | "
            f"{cell(report['averaging_gain_ci95'][arm], sign=True)} |"
        )
    return "\n".join(lines)


def write_report(
    stem: Path, text: str, report: dict[str, Any], files: dict[str, str]
) -> dict[str, str]:
    """Write ``text`` to ``stem.md`` and ``report`` (with the list of files) to ``stem.json``.

    Args:
        stem: Path of both files, without suffix.
        text: The markdown.
        report: The report; NaN becomes ``null``.
        files: Files already written, by key.

    Returns:
        ``files`` with ``markdown`` and ``json`` added.
    """
    files = {
        **files,
        "markdown": str(stem.with_suffix(".md")),
        "json": str(stem.with_suffix(".json")),
    }
    stem.with_suffix(".md").write_text(text + "\n")
    stem.with_suffix(".json").write_text(
        json.dumps(_json_safe({**report, "files": files}), indent=2)
    )
    return files


def _json_safe(value: Any) -> Any:
    """NaN (a CI from one seed) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_evaluation_report(
    report: dict[str, Any],
    pictures: dict[str, Any],
    out: Path,
    name: str,
    class_names: Sequence[str] | None = None,
) -> dict[str, str]:
    """Write the report of :func:`~gdaload.bench.evaluate.run_evaluation` and its pictures.

    Args:
        report: The report.
        pictures: Real and generated images and features of one seed, as
            ``run_evaluation`` collects them.
        out: Folder of the files (created).
        name: The task's name, the prefix of every file.
        class_names: Names of the classes, for the pictures.

    Returns:
        The paths written, by key: ``samples``, ``tsne``, ``accuracy_vs_ratio``,
        ``markdown`` and ``json``.
    """
    # matplotlib and scikit-learn load only when pictures are drawn.
    from gdaload.metrics.plots import accuracy_vs_ratio, sample_grid, tsne_map

    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}_report"
    p = pictures
    files = {
        "samples": sample_grid(
            p["real_x"],
            p["real_y"],
            p["fake_x"],
            p["fake_y"],
            out / f"{name}_samples.png",
            class_names=class_names,
            title=f"{name}: real training images and generated ones",
        ),
        "tsne": tsne_map(
            p["real_f"],
            p["real_fy"],
            p["fake_f"],
            p["fake_fy"],
            out / f"{name}_tsne.png",
            class_names=class_names,
            title=f"{name}: test and generated images, features of the "
            f"real-only classifier (seed {p['seed']})",
        ),
    }
    summary = report["mean_ci95"]
    gda = {n: r for n, r in report["ratios"].items() if n.startswith("GDA m_G")}
    baseline_mean, baseline_half = summary[BASELINE]
    files["accuracy_vs_ratio"] = accuracy_vs_ratio(
        list(gda.values()),
        [100 * summary[n][0] for n in gda],
        [100 * summary[n][1] for n in gda],
        out / f"{name}_accuracy_vs_ratio.png",
        baseline=(100 * baseline_mean, 100 * baseline_half),
        points={
            n.split(" m_G/m_S=")[0]: (r, 100 * summary[n][0], 100 * summary[n][1])
            for n, r in report["ratios"].items()
            if n not in gda
        },
        title=f"{name}: accuracy against m_G/m_S "
        f"({len(report['settings']['seeds'])} seeds, 95% CI)",
    )
    return write_report(
        stem, markdown(report), report, {key: str(path) for key, path in files.items()}
    )


def write_view_report(
    report: dict[str, Any],
    picture: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    out: Path,
    name: str,
    view_names: Sequence[str] | None = None,
) -> dict[str, str]:
    """Write the report of :func:`~gdaload.bench.views.run_view_evaluation` and its picture.

    Args:
        report: The report.
        picture: ``(images, generated views, view indices)`` of a few test images.
        out: Folder of the files (created).
        name: The task's name, the prefix of every file.
        view_names: Names of the generator's views, for the picture.

    Returns:
        The paths written, by key: ``views``, ``markdown`` and ``json``.
    """
    # matplotlib loads only when the picture is drawn.
    from gdaload.metrics.plots import view_grid

    out.mkdir(parents=True, exist_ok=True)
    images, novel, views = picture
    grid = view_grid(
        images,
        novel,
        views,
        out / f"{name}_views.png",
        view_names=view_names,
        title=f"{name}: test views (left) and the views generated from them",
    )
    return write_report(out / f"{name}_report", view_markdown(report), report, {"views": str(grid)})
