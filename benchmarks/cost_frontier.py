"""Accuracy per generation second: what the cost levers of GenerativeLoader give up.

The quickstart's protocol (few-shot digits, 10 labelled images per class, the same CNN,
Adam 1e-3, batch 20, 40 epochs, the shipped digits generator with DPM-Solver++ 10 steps),
trained once per arm and seed from the same initial weights on the same real images in
the same order. Arms (m_G/m_S = ``--ratio`` wherever there are synthetic samples):

* real only;
* classic augmentation: kornia's ``RandomAffine`` on every batch, as ``gdaload evaluate``
  does (no generation: the cost floor);
* GDA fresh: every synthetic sample fresh every epoch (``refresh=1``, ``mode="add"``),
  the quickstart's GDA arm and the reference gain;
* GDA refresh=0.5 and refresh=0.25: that fraction of the synthetic positions made fresh
  each epoch, the rest served again from a store (a temporary folder per seed and arm,
  so no arm reads another's samples);
* GDA fixed set: ``refresh=0``, epoch 0's samples every epoch;
* GDA replace: fresh every epoch, synthetic samples in place of real rows
  (``mode="replace"``), so batches stay at 20 and an epoch serves 67 synthetic and 33
  real rows instead of 200 synthetic and 100 real;
* distilled (2 steps) fresh and refresh=0.25: the shipped distilled model
  (``gdaload/assets/digits-lcm``, ``gdaload distill``) with the ``lcm`` sampler at 2 steps,
  the best FID per second of ``benchmarks/distill.py`` (fewer steps and better FID than
  4 steps), in place of the teacher at DPM-Solver++ 10 steps.

For every arm and seed the run records test accuracy, generation seconds (seconds inside
``generator.generate``, from ``loader.stats()``), samples generated and wall seconds.
Generation seconds are measured on whatever machine runs this and move with its load;
samples generated is the noise-free cost. Gains are paired by seed against real only;
each arm's gain is also expressed as a fraction of the fresh arm's gain, and its cost as a
fraction of the fresh arm's.

The goal under test: an arm that keeps >= 90% of the fresh arm's gain at <= 30% of its
generation seconds. It is judged on the means over seeds (fraction of the gain, paired by
seed; fraction of the generation seconds); the JSON also says whether the lower end of
the gain fraction's 95% interval clears 90%, and whether the goal holds with samples
generated in place of seconds. ``--from-json`` recomputes the summary, table and plot
from a report's per-seed records.

``--arms`` runs only the named arms (real only always runs) and ``--merge REPORT`` takes
every other arm's per-seed records from an earlier report of the same settings. Test
accuracy and samples generated are a pure function of the settings and the seed, so the
merge checks that the real only accuracies of both runs agree and refuses otherwise;
generation seconds are not (they move with the machine's load), so the report keeps both
runs' machine records, and the arms run here are listed under ``settings.merged``.

Run: OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/cost_frontier.py --seeds 5
(``--quick``: 1 seed, 2 epochs, a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdaload.bench.arms import BASELINE, ArmResults, SeedRun
from gdaload.bench.assets import DIGITS_LCM
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.bench.tasks import digits_task
from gdaload.data.loader import GenerativeLoader

CLASSIC = "classic augmentation"
FRESH = "GDA fresh (refresh=1)"
GAIN_GOAL, COST_GOAL = 0.9, 0.3


@dataclass(frozen=True)
class GdaArm:
    """A GenerativeLoader setting: ``refresh`` (with a store below 1), ``mode`` and
    whether the generator is the distilled one."""

    name: str
    refresh: float = 1.0
    mode: str = "add"
    distilled: bool = False


GDA_ARMS = (
    GdaArm(FRESH),
    GdaArm("GDA refresh=0.5", refresh=0.5),
    GdaArm("GDA refresh=0.25", refresh=0.25),
    GdaArm("GDA fixed set (refresh=0)", refresh=0.0),
    GdaArm("GDA replace (refresh=1)", mode="replace"),
    GdaArm("distilled (2 steps) fresh", distilled=True),
    GdaArm("distilled (2 steps) refresh=0.25", refresh=0.25, distilled=True),
)
#: Sampler and steps of the distilled arms (fixed from benchmarks/distill.py's results).
DISTILLED_SAMPLER, DISTILLED_STEPS = "lcm", 2
ARMS = (BASELINE, CLASSIC, *(arm.name for arm in GDA_ARMS))


def _ci(values: Sequence[float]) -> list[float | None]:
    """``[mean, half-width]`` of finite values, ``None`` where undefined (JSON has no NaN)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [None, None]
    return [_finite(x) for x in mean_ci(finite)]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _fractions(values: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Per-seed ``values / reference``; NaN where the reference is 0."""
    return [v / r if r else float("nan") for v, r in zip(values, reference, strict=True)]


def summarise(
    accuracy: Mapping[str, Sequence[float]],
    generation_seconds: Mapping[str, Sequence[float]],
    generated: Mapping[str, Sequence[float]],
) -> dict[str, Any]:
    """Means, paired gains and fractions of the fresh arm, per arm.

    Args:
        accuracy: ``{arm: [test accuracy per seed]}``; holds ``BASELINE`` and ``FRESH``.
        generation_seconds: ``{arm: [generation seconds per seed]}``.
        generated: ``{arm: [samples generated per seed]}``.

    Returns:
        ``{arm: {...}}`` with ``accuracy``, ``gain`` (paired vs real only),
        ``gain_vs_fresh`` (paired accuracy difference to the fresh arm),
        ``gain_fraction`` (per-seed gain / fresh gain, mean and CI, seeds where the fresh
        gain is 0 left out), ``gain_fraction_of_means`` (mean gain / mean fresh gain),
        ``generation_seconds`` and ``generated`` (means and CI) and their fractions of
        the fresh arm's (per seed, then mean and CI); each ``[mean, half-width]``.
    """
    base, fresh = accuracy[BASELINE], accuracy[FRESH]
    fresh_gain = np.subtract(fresh, base)
    out: dict[str, Any] = {}
    for arm, accs in accuracy.items():
        gain = np.subtract(accs, base)
        out[arm] = {
            "accuracy": _ci(accs),
            "gain": [_finite(x) for x in paired_gain(accs, base)],
            "gain_vs_fresh": [_finite(x) for x in paired_gain(accs, fresh)],
            "gain_fraction": _ci(_fractions(gain, fresh_gain)),
            "gain_fraction_of_means": _finite(
                gain.mean() / fresh_gain.mean() if fresh_gain.mean() else float("nan")
            ),
            "generation_seconds": _ci(generation_seconds[arm]),
            "generated": _ci(generated[arm]),
            "generation_seconds_fraction": _ci(
                _fractions(generation_seconds[arm], generation_seconds[FRESH])
            ),
            "generated_fraction": _ci(_fractions(generated[arm], generated[FRESH])),
        }
    return out


def goal(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Which GDA arms keep >= 90% of the fresh gain at <= 30% of its generation seconds.

    Judged on means over seeds; ``met_with_ci`` also asks the lower end of the gain
    fraction's interval to clear 90%. Arms without generation (real only, classic) are
    not candidates: they are the floor the frontier is drawn against.
    """
    arms = {}
    for arm in (a.name for a in GDA_ARMS if a.name != FRESH and a.name in summary):
        s = summary[arm]
        frac, half = s["gain_fraction"]
        cost = s["generation_seconds_fraction"][0]
        samples = s["generated_fraction"][0]
        kept = frac is not None and frac >= GAIN_GOAL
        met = kept and cost is not None and cost <= COST_GOAL
        lower = None if frac is None or half is None else frac - half
        arms[arm] = {
            "gain_fraction": frac,
            "generation_seconds_fraction": cost,
            "generated_fraction": samples,
            "met": met,
            "met_with_ci": bool(met and lower is not None and lower >= GAIN_GOAL),
            "met_on_samples": bool(kept and samples is not None and samples <= COST_GOAL),
        }
    return {
        "rule": f"gain fraction >= {GAIN_GOAL} of the fresh arm's at generation seconds "
        f"<= {COST_GOAL} of its (means over seeds)",
        "arms": arms,
        "met_by": [arm for arm, a in arms.items() if a["met"]],
        "met_on_samples_by": [arm for arm, a in arms.items() if a["met_on_samples"]],
    }


def analyse(per_seed: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`summarise` (with wall seconds) and :func:`goal` of a run's per-seed records."""
    summary = summarise(per_seed["accuracy"], per_seed["generation_seconds"], per_seed["generated"])
    for arm, values in per_seed["wall_seconds"].items():
        summary[arm]["wall_seconds"] = _ci(values)
    return summary, goal(summary)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "shared_machine": True,
        "load_average_start": list(os.getloadavg()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    task = digits_task(
        shots=args.shots,
        sampler=args.sampler,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    from gdaload.generators.diffusion import DiffusionGenerator

    distilled = DiffusionGenerator.from_pretrained(
        DIGITS_LCM, sampler=DISTILLED_SAMPLER, steps=DISTILLED_STEPS, device="cpu"
    )
    selected = set(args.arms or ARMS) | {BASELINE}
    run_arms = [arm for arm in ARMS if arm in selected]
    gda_arms = [arm for arm in GDA_ARMS if arm.name in selected]
    conditions = machine()
    results = ArmResults()
    generation_seconds: dict[str, list[float]] = {arm: [] for arm in run_arms}
    generated: dict[str, list[float]] = {arm: [] for arm in run_arms}
    wall: dict[str, list[float]] = {arm: [] for arm in run_arms}
    loader_stats: dict[str, list[dict[str, float]]] = {arm: [] for arm in run_arms}

    for seed in range(args.seeds):
        # SeedRun gives the seed's split, real batches in a fixed order, classic
        # augmentation and training; GDA arms use the bare generator (not SeedRun's
        # shared in-memory cache), so every arm pays for its own samples.
        seed_run = SeedRun(task, seed, results)

        def record(name: str, batches: Any, seed_run: SeedRun = seed_run) -> None:
            start = time.perf_counter()
            seed_run.record(name, batches)
            wall[name].append(time.perf_counter() - start)

        for name in (a for a in (BASELINE, CLASSIC) if a in selected):
            batches = seed_run.real_batches() if name == BASELINE else None
            record(name, batches if batches is not None else seed_run.augmented_batches())
            generation_seconds[name].append(0.0)
            generated[name].append(0.0)
        for arm in gda_arms:
            with tempfile.TemporaryDirectory(prefix="cost-frontier-") as folder:
                loader = GenerativeLoader(
                    seed_run.real_batches(),
                    distilled if arm.distilled else task.generator,
                    ratio=args.ratio,
                    seed=seed,
                    store=folder if arm.refresh < 1 else None,
                    refresh=arm.refresh,
                    mode=arm.mode,
                    progress=False,
                )
                with loader:
                    record(arm.name, loader)
                stats = loader.stats()
            generation_seconds[arm.name].append(stats["generation_seconds"])
            generated[arm.name].append(stats["generated"])
            loader_stats[arm.name].append(
                {
                    key: stats[key]
                    for key in (
                        "real",
                        "synthetic",
                        "generated",
                        "generation_seconds",
                        "generation_seconds_per_sample",
                        "carried_over",
                        "replaced",
                        "cache_hits",
                        "cache_misses",
                    )
                }
            )
        line = ", ".join(
            f"{arm} {results.accuracy[arm][-1]:.4f} ({generation_seconds[arm][-1]:.0f} s, "
            f"{generated[arm][-1]:.0f} gen)"
            for arm in run_arms
        )
        print(f"seed {seed}: {line}", flush=True)

    conditions["load_average_end"] = list(os.getloadavg())
    per_seed = {
        "accuracy": results.accuracy,
        "generation_seconds": generation_seconds,
        "generated": generated,
        "wall_seconds": wall,
        "loader_stats": loader_stats,
    }
    report: dict[str, Any] = {
        "settings": {**vars(args), "seeds": list(range(args.seeds))},
        "machine": conditions,
        "per_seed": per_seed,
    }
    if not args.merge:
        report["summary"], report["goal"] = analyse(report["per_seed"])
    return report


#: Settings that must agree for two reports' per-seed records to be merged.
_SAME = ("epochs", "shots", "ratio", "batch_size", "sampler", "steps", "seeds")


def merge(earlier: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``earlier`` with the per-seed records of the arms ``new`` ran replaced by ``new``'s.

    Raises:
        ValueError: If the settings differ, or the real only accuracies (a pure function
            of the settings and the seed) disagree: the runs are not comparable.
    """
    for key in _SAME:
        if earlier["settings"][key] != new["settings"][key]:
            raise ValueError(
                f"cannot merge: {key} is {earlier['settings'][key]!r} in the earlier report "
                f"and {new['settings'][key]!r} here; rerun every arm with the same settings"
            )
    old_base = earlier["per_seed"]["accuracy"][BASELINE]
    new_base = new["per_seed"]["accuracy"][BASELINE]
    if old_base != new_base:
        raise ValueError(
            f"cannot merge: real only accuracies differ ({old_base} before, {new_base} now), "
            "so training is not reproducing; rerun every arm"
        )
    arms = list(new["per_seed"]["accuracy"])
    per_seed = earlier["per_seed"]
    for key, records in new["per_seed"].items():
        per_seed.setdefault(key, {}).update({arm: records[arm] for arm in arms})
    # Every table and plot iterates ARMS: keep the records in that order.
    for key in per_seed:
        per_seed[key] = {arm: per_seed[key][arm] for arm in ARMS if arm in per_seed[key]}
    missing = [arm for arm in ARMS if arm not in per_seed["accuracy"]]
    if missing:
        raise ValueError(f"cannot merge: no records of {missing}; run them with --arms")
    return {
        "settings": {**earlier["settings"], "merged": {"arms": arms, **new["settings"]}},
        "machine": {"earlier_run": earlier["machine"], "merged_run": new["machine"]},
        "per_seed": per_seed,
        "total_wall_seconds_earlier_run": earlier.get("total_wall_seconds"),
    }


def _fmt(
    pair: Sequence[float | None], scale: float = 100.0, digits: int = 2, signed: bool = False
) -> str:
    """``mean ± half`` of ``pair`` times ``scale``; empty when the mean is undefined."""
    mean, half = pair
    if mean is None:
        return ""
    text = f"{scale * mean:{'+' if signed else ''}.{digits}f}"
    return text if half is None else f"{text} ± {scale * half:.{digits}f}"


def markdown(report: Mapping[str, Any]) -> str:
    s, summary = report["settings"], report["summary"]
    lines = [
        f"Digits, {s['shots']} labelled images per class, {len(s['seeds'])} seeds, "
        f"{s['epochs']} epochs; m_G/m_S = {s['ratio']:g}, {s['sampler']} {s['steps']} steps; "
        "mean ± 95% CI; gains paired by seed; fractions are of the fresh arm's, per seed.",
        "",
        "| arm | test accuracy (%) | gain over real only (pp) | fraction of fresh gain "
        "| generation s | fraction of fresh generation s | samples generated | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in (a for a in ARMS if a in summary):
        a = summary[arm]
        has_gen = arm not in (BASELINE, CLASSIC)
        gen_s = _fmt(a["generation_seconds"], scale=1.0, digits=1) if has_gen else "0"
        gen_frac = _fmt(a["generation_seconds_fraction"], scale=1.0) if has_gen else ""
        gen_n = f"{a['generated'][0]:.0f}" if has_gen else "0"
        lines.append(
            f"| {arm} | {_fmt(a['accuracy'])} "
            f"| {'' if arm == BASELINE else _fmt(a['gain'], signed=True)} "
            f"| {'' if arm == BASELINE else _fmt(a['gain_fraction'], scale=1.0)} "
            f"| {gen_s} | {gen_frac} | {gen_n} | {_fmt(a['wall_seconds'], scale=1.0, digits=1)} |"
        )
    met, on_samples = report["goal"]["met_by"], report["goal"]["met_on_samples_by"]
    lines += [
        "",
        f"Goal ({report['goal']['rule']}): "
        + (f"met by {', '.join(met)}." if met else "not met by any arm.")
        + " Counting samples generated instead of seconds: "
        + (f"met by {', '.join(on_samples)}." if on_samples else "not met by any arm."),
    ]
    return "\n".join(lines)


def plot(report: Mapping[str, Any], path: Path) -> None:
    """Mean accuracy (95% CI bars) against mean generation seconds and samples generated."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    summary = report["summary"]
    fig = Figure(figsize=(11.0, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label in (
        (axes[0], "generation_seconds", "generation seconds per run (mean, log scale)"),
        (axes[1], "generated", "samples generated per run (mean, log scale)"),
    ):
        for arm, style in ((a, st) for a, st in ((BASELINE, ":"), (CLASSIC, "--")) if a in summary):
            mean, half = summary[arm]["accuracy"]
            ax.axhline(100 * mean, linestyle=style, color="grey", label=f"{arm} (no generation)")
            if half is not None:
                ax.axhspan(100 * (mean - half), 100 * (mean + half), color="grey", alpha=0.08)
        for arm in (a.name for a in GDA_ARMS if a.name in summary):
            x = summary[arm][key][0]
            mean, half = summary[arm]["accuracy"]
            ax.errorbar(
                [max(x, 1e-3)],
                [100 * mean],
                yerr=None if half is None else [100 * half],
                fmt="o",
                capsize=3,
                label=arm,
            )
        goal_x = COST_GOAL * summary[FRESH][key][0]
        ax.axvline(goal_x, color="black", linewidth=0.8, alpha=0.5)
        ax.annotate(
            f" {COST_GOAL:.0%} of fresh",
            (goal_x, 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=7,
        )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=7, loc="lower right")
    s = report["settings"]
    fig.suptitle(
        f"Few-shot digits, {len(s['seeds'])} seeds, {s['epochs']} epochs, m_G/m_S = "
        f"{s['ratio']:g}: accuracy against generation cost"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png", bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--ratio", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--sampler", default="dpm-solver++")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/cost_frontier")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs: a smoke run")
    parser.add_argument(
        "--from-json", help="redraw the table and the plot from a report written by a run"
    )
    parser.add_argument("--arms", nargs="+", choices=ARMS, help="run only these arms")
    parser.add_argument(
        "--merge", help="take the other arms' per-seed records from this earlier report"
    )
    args = parser.parse_args()
    if args.from_json:
        out = Path(args.from_json)
        report = json.loads(out.read_text())
        report["summary"], report["goal"] = analyse(report["per_seed"])
        out.write_text(json.dumps(report, indent=2))
        out.with_suffix(".md").write_text(markdown(report) + "\n")
        plot(report, out.with_suffix(".png"))
        print(markdown(report))
        return
    if args.arms and FRESH not in args.arms and not args.merge:
        parser.error(f"--arms needs {FRESH!r} (every fraction is of it) or --merge")
    if args.quick:
        args.seeds, args.epochs = 1, 2
    earlier = json.loads(Path(args.merge).read_text()) if args.merge else None
    start = time.perf_counter()
    report = run(args)
    report["total_wall_seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if earlier is not None:
        # This run's own records first, so a refused merge loses no measurement.
        out.with_name(out.name + "-merged-run.json").write_text(json.dumps(report, indent=2))
        report = {**merge(earlier, report), "merged_run_wall_seconds": report["total_wall_seconds"]}
        report["summary"], report["goal"] = analyse(report["per_seed"])
    table = markdown(report)
    print("\n" + table)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    plot(report, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
