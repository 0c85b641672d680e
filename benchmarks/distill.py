"""Few-step generation on digits: the distilled model against DPM-Solver++ on its teacher.

The protocol of ``benchmarks/speed.py`` (the README's speed/FID table): FID of
``--samples`` generated digits against the real pool the teacher was trained on, in the
penultimate features of a digits CNN trained on that pool; every arm uses the same
labels and seeds. It is repeated over ``--seeds`` disjoint seed ranges (range 0 is the
README table's), giving means with 95% CIs and the paired FID difference of each
distilled arm against DPM-Solver++ at 10 steps. Throughput (images/s on ``--threads``
threads) is the median of ``--repeats`` interleaved rounds over all arms.

Arms: the shipped teacher (``gdaload/assets/digits-generator``) with ``dpm-solver++`` at
10 and 20 steps, and the shipped distilled model (``gdaload/assets/digits-lcm``, made by
``gdaload distill``) with ``lcm`` at 1, 2 and 4 steps. Goal (issue 16): a distilled arm
at <= 4 steps within 10% of DPM-Solver++-10's FID at >= 2.5x its images/s.

    python benchmarks/distill.py --out benchmarks/results/distill
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
from speed import images_per_second, reference_features

from gdaload import DiffusionGenerator
from gdaload.bench.assets import DIGITS_GENERATOR, DIGITS_LCM
from gdaload.bench.stats import mean_ci, paired_gain
from gdaload.metrics import extract_features, frechet_distance

#: Arm name -> (model, sampler, steps).
ARMS: dict[str, tuple[Path, str, int]] = {
    "dpm-solver++ 10": (DIGITS_GENERATOR, "dpm-solver++", 10),
    "dpm-solver++ 20": (DIGITS_GENERATOR, "dpm-solver++", 20),
    "distilled 1": (DIGITS_LCM, "lcm", 1),
    "distilled 2": (DIGITS_LCM, "lcm", 2),
    "distilled 4": (DIGITS_LCM, "lcm", 4),
}
BASELINE = "dpm-solver++ 10"
#: The goal: FID at most this much above the baseline's, at least this speed-up.
FID_TOLERANCE, SPEEDUP = 0.10, 2.5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--throughput-images", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/distill")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    features, pool_feats, test_feats = reference_features(device)
    gens = {
        name: DiffusionGenerator.from_pretrained(
            model, sampler=sampler, steps=steps, device=device, max_batch_size=args.batch_size
        )
        for name, (model, sampler, steps) in ARMS.items()
    }
    n, b = args.samples, args.batch_size
    labels = (torch.arange(n) % 10).tolist()
    fids: dict[str, list[float]] = {name: [] for name in ARMS}
    for seed in range(args.seeds):
        seeds = list(range(seed * n, (seed + 1) * n))
        for name, gen in gens.items():
            images = torch.cat(
                [gen.generate(labels[i : i + b], seeds[i : i + b]) for i in range(0, n, b)]
            )
            fids[name].append(frechet_distance(pool_feats, extract_features(images, features)))
            print(f"seed {seed} {name:>16}: FID {fids[name][-1]:.3f}", flush=True)

    rates: dict[str, list[float]] = {name: [] for name in ARMS}
    # Interleaved rounds: a load change on a shared machine hits every arm alike.
    for _ in range(args.repeats):
        for name, gen in gens.items():
            rates[name].append(images_per_second(gen.generate, args.throughput_images, b, device))
    throughput = {name: statistics.median(v) for name, v in rates.items()}

    arms: dict[str, dict[str, Any]] = {}
    for name, (model, sampler, steps) in ARMS.items():
        mean, ci = mean_ci(fids[name])
        arms[name] = {
            "model": model.name,
            "sampler": sampler,
            "steps": steps,
            "fid": fids[name],
            "fid_mean": mean,
            "fid_ci95": ci,
            "images_per_s": throughput[name],
            "images_per_s_rounds": rates[name],
            "speedup_vs_baseline": throughput[name] / throughput[BASELINE],
        }
        if name != BASELINE:
            diff, diff_ci = paired_gain(fids[name], fids[BASELINE])
            arms[name]["fid_minus_baseline"] = {"mean": diff, "ci95": diff_ci}
    limit = (1 + FID_TOLERANCE) * arms[BASELINE]["fid_mean"]
    met = [
        name
        for name, arm in arms.items()
        if arm["sampler"] == "lcm"
        and arm["steps"] <= 4
        and arm["fid_mean"] <= limit
        and arm["speedup_vs_baseline"] >= SPEEDUP
    ]
    record = {
        "settings": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "fid_real_test_vs_pool": frechet_distance(pool_feats, test_feats),
        "distillation": json.loads((DIGITS_LCM / "gdaload.json").read_text())["distillation"],
        "arms": arms,
        "goal": f"a distilled arm at <= 4 steps with FID <= {limit:.3f} "
        f"(baseline + {FID_TOLERANCE:.0%}) at >= {SPEEDUP}x the baseline's images/s",
        "goal_met_by": met,
    }
    out = Path(args.out + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"\nFID over {args.seeds} seed ranges of {n} images (real test vs pool: "
        f"{record['fid_real_test_vs_pool']:.3f}); {args.threads} thread(s)\n"
    )
    print(
        "| arm | steps | FID (mean ± 95% CI) | FID − dpm-solver++ 10 (paired) | images/s "
        "| × dpm-solver++ 10 |"
    )
    print("|---|---|---|---|---|---|")
    for name, arm in arms.items():
        gain = arm.get("fid_minus_baseline")
        diff = f"{gain['mean']:+.2f} ± {gain['ci95']:.2f}" if gain else ""
        print(
            f"| {name.rsplit(' ', 1)[0]} | {arm['steps']} | {arm['fid_mean']:.2f} ± "
            f"{arm['fid_ci95']:.2f} | {diff} | {arm['images_per_s']:.1f} | "
            f"{arm['speedup_vs_baseline']:.2f} |"
        )
    print(f"\ngoal: {record['goal']}; met by: {met or 'none'}; written to {out}")


if __name__ == "__main__":
    main()
