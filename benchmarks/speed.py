"""How fast generated training images are made, and at what quality.

Digits part (any device, default CPU), on the shipped class-conditional digits model:

* **Baseline**, measured in the same run: what a user would otherwise write, the
  diffusers pipeline as saved (``ClassConditionalPipeline.from_pretrained``) called with
  its saved scheduler (DDPM, the training scheduler) and its default
  ``num_inference_steps`` (read from the call signature: 50), one ``torch.Generator``
  per call, in batches of the same size as the generator's.
* **Quality sweep**: FID of ``--samples`` generated images against the real pool the
  model was trained on, in the penultimate features of a digits CNN trained on that
  pool, for ``ddim``, ``dpm-solver++`` and ``unipc`` at ``--steps``; every configuration
  uses the same labels and seeds. The FID between the real test images and the pool is
  printed as the floor that real data reaches.
* **Throughput** of :class:`~gdaload.DiffusionGenerator` (images/s), timed in
  interleaved rounds with the baseline (median of ``--repeats``), for the fastest
  ``dpm-solver++`` setting that matches the baseline's FID, the fastest within 10% of
  ``ddim`` at 50 steps, and the library default (20 steps).

SD-1.5 part (``--device cuda`` only): full-size Stable Diffusion 1.5 components with
random weights (UNet2DConditionModel with SD-1.5's config, its VAE and CLIP text encoder
shapes; speed does not depend on the weights) at 512x512: images/s of
``DiffusionGenerator`` (text mode, ``dpm-solver++``) against the pipeline's own default
(PNDM, 50 steps) at the same dtype and guidance, and the denoiser's achieved TFLOP/s
(FLOPs of one call counted by ``torch.utils.flop_counter.FlopCounterMode``) against the
GPU's dense bf16 peak, with ``--channels-last`` and ``--compile`` options.

Run: python benchmarks/speed.py --out benchmarks/results/speed
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import statistics
import string
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gdaload import ClassConditionalPipeline, DiffusionGenerator
from gdaload.bench.assets import DIGITS_GENERATOR
from gdaload.bench.classifier import digits_cnn, fit_classifier
from gdaload.datasets import digits_splits
from gdaload.metrics import extract_features, frechet_distance, penultimate

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, by a substring of the device
#: name, from the vendors' data sheets; the first match wins.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.5),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("RTX 4090", 165.2),
)
#: Allowed FID excess over ``ddim`` at 50 steps for "same quality".
TOLERANCE = 0.10

#: Makes one image per ``(label, seed)``.
Maker = Callable[[Sequence[int], Sequence[int]], Any]


def images_per_second(make: Maker, n: int, batch: int, device: torch.device) -> float:
    labels, seeds = [i % 10 for i in range(n)], list(range(n))
    _sync(device)
    start = time.perf_counter()
    for i in range(0, n, batch):
        make(labels[i : i + batch], seeds[i : i + batch])
    _sync(device)
    return n / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def default_pipeline(device: torch.device) -> tuple[ClassConditionalPipeline, int]:
    """The saved pipeline with its saved scheduler, and the call's default step count."""
    pipe = ClassConditionalPipeline.from_pretrained(DIGITS_GENERATOR).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, int(call_default(ClassConditionalPipeline, "num_inference_steps"))


def call_default(pipeline_class: type, name: str) -> Any:
    """Default of an argument of a pipeline's ``__call__``: what a user gets by omitting it."""
    return inspect.signature(pipeline_class.__call__).parameters[name].default


def baseline_maker(pipe: ClassConditionalPipeline) -> Maker:
    def make(labels: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
        # What the diffusers docs show: one generator for the batch, default steps.
        return pipe(labels, generator=torch.Generator().manual_seed(seeds[0])).images

    return make


def reference_features(device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Penultimate features of a digits CNN trained on the generator pool; the pool's and
    the test set's features."""
    splits = digits_splits()
    loader = DataLoader(
        splits.generator_pool,
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    model = fit_classifier(digits_cnn, loader, epochs=30, seed=0)
    features = penultimate(model).to(device)
    return (
        features,
        extract_features(splits.generator_pool, features),
        extract_features(splits.test, features),
    )


def digits_part(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    features, pool_feats, test_feats = reference_features(device)
    n = args.samples
    labels, seeds = torch.arange(n) % 10, list(range(n))

    def quality(make: Maker) -> tuple[float, float]:
        start = time.perf_counter()
        b = args.batch_size
        images = torch.cat(
            [make(labels[i : i + b].tolist(), seeds[i : i + b]) for i in range(0, n, b)]
        )
        _sync(device)
        seconds = time.perf_counter() - start
        return frechet_distance(pool_feats, extract_features(images, features)), n / seconds

    pipe, default_steps = default_pipeline(device)
    baseline_name = f"pipeline default: {type(pipe.scheduler).__name__} {default_steps} steps"
    sweep: dict[str, dict[str, Any]] = {}
    fid, rate = quality(baseline_maker(pipe))
    sweep["baseline"] = {"label": baseline_name, "fid": fid, "images_per_s_sweep": rate}
    print(f"{baseline_name}: FID {fid:.3f}  ({rate:.1f} images/s)", flush=True)
    generators: dict[tuple[str, int], DiffusionGenerator] = {}
    for sampler in args.samplers:
        for steps in args.steps:
            gen = DiffusionGenerator.from_pretrained(
                DIGITS_GENERATOR,
                sampler=sampler,
                steps=steps,
                device=device,
                max_batch_size=args.batch_size,
            )
            generators[sampler, steps] = gen
            fid, rate = quality(gen.generate)
            sweep[f"{sampler} {steps}"] = {
                "sampler": sampler,
                "steps": steps,
                "fid": fid,
                "images_per_s_sweep": rate,
            }
            print(
                f"{sampler:>13} {steps:>3} steps: FID {fid:.3f}  ({rate:.1f} images/s)", flush=True
            )

    real_floor = frechet_distance(pool_feats, test_feats)
    ddim50 = sweep.get("ddim 50", {}).get("fid")
    dpm = sorted(
        (v["steps"], v["fid"]) for v in sweep.values() if v.get("sampler") == "dpm-solver++"
    )
    within = [s for s, f in dpm if ddim50 is not None and f <= (1 + TOLERANCE) * ddim50]
    matched = [s for s, f in dpm if f <= sweep["baseline"]["fid"]]
    chosen = {
        "matches baseline FID": min(matched) if matched else None,
        f"within {TOLERANCE:.0%} of ddim 50": min(within) if within else None,
        "library default": 20,
    }
    timed_steps = sorted({s for s in chosen.values() if s is not None})
    makers = {"baseline": baseline_maker(pipe)}
    for steps in timed_steps:
        gen = generators.get(("dpm-solver++", steps)) or DiffusionGenerator.from_pretrained(
            DIGITS_GENERATOR,
            sampler="dpm-solver++",
            steps=steps,
            device=device,
            max_batch_size=args.batch_size,
        )
        makers[f"dpm-solver++ {steps}"] = gen.generate
    rates: dict[str, list[float]] = {name: [] for name in makers}
    # Interleaved rounds: a load change on a shared machine hits every contender alike.
    for _ in range(args.repeats):
        for name, make in makers.items():
            rates[name].append(
                images_per_second(make, args.throughput_images, args.batch_size, device)
            )
    throughput = {name: statistics.median(v) for name, v in rates.items()}
    base_rate = throughput["baseline"]
    ratios = {name: rate / base_rate for name, rate in throughput.items()}
    return {
        "baseline": baseline_name,
        "samples": n,
        "fid_real_test_vs_pool": real_floor,
        "sweep": sweep,
        "chosen_steps": chosen,
        "dpm_le20_within_tolerance_of_ddim50": bool(within and min(within) <= 20),
        "throughput_images_per_s": throughput,
        "throughput_rounds": rates,
        "speedup_vs_baseline": ratios,
    }


def print_digits(record: dict[str, Any], steps: Sequence[int], samplers: Sequence[str]) -> None:
    sweep = record["sweep"]
    print(
        f"\nFID against the real pool ({record['samples']} generated; real test images vs pool: "
        f"{record['fid_real_test_vs_pool']:.3f}); baseline {record['baseline']}: "
        f"{sweep['baseline']['fid']:.3f}\n"
    )
    print("| sampler | " + " | ".join(f"{s} steps" for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for sampler in samplers:
        cells = " | ".join(f"{sweep[f'{sampler} {s}']['fid']:.3f}" for s in steps)
        print(f"| {sampler} | {cells} |")
    print(
        f"\nfastest dpm-solver++ steps: {record['chosen_steps']}; dpm-solver++ at <= 20 "
        f"steps within {TOLERANCE:.0%} of ddim 50: "
        f"{record['dpm_le20_within_tolerance_of_ddim50']}\n"
    )
    print("| generator | images/s (median) | × baseline |")
    print("|---|---|---|")
    for name, rate in record["throughput_images_per_s"].items():
        label = record["baseline"] if name == "baseline" else f"DiffusionGenerator {name} steps"
        print(f"| {label} | {rate:.1f} | {record['speedup_vs_baseline'][name]:.2f} |")


# ---------------------------------------------------------------------------- SD-1.5 on CUDA
def sd15_pipeline(device: torch.device, dtype: torch.dtype) -> Any:
    """Stable Diffusion 1.5's architecture with random weights (no download)."""
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(tempfile.mkdtemp())
    # A character-level tokenizer stands in for CLIP's BPE vocabulary so that nothing is
    # downloaded; the text encoder keeps SD-1.5's shapes, so its cost is unchanged.
    chars = string.ascii_lowercase + string.digits + string.punctuation
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(chars) + [c + "</w>" for c in chars]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
                projection_dim=768,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            cross_attention_dim=768,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
        )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def bf16_peak(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def denoiser_tflops(
    unet: torch.nn.Module, batch: int, dtype: torch.dtype, device: torch.device, calls: int
) -> tuple[float, float]:
    """FLOPs of one UNet call (counted on the eager module) and achieved TFLOP/s."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(batch, 4, 64, 64, device=device, dtype=dtype)
    t = torch.full((batch,), 500, device=device)
    text = torch.randn(batch, 77, 768, device=device, dtype=dtype)
    eager = getattr(unet, "_orig_mod", unet)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            eager(x, t, encoder_hidden_states=text)
        flops = counter.get_total_flops()
        for _ in range(3):  # warm-up (and compilation)
            unet(x, t, encoder_hidden_states=text)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            unet(x, t, encoder_hidden_states=text)
        end.record()
        torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1000
    return float(flops), flops * calls / seconds / 1e12


def sd15_part(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline

    dtype = torch.bfloat16 if args.bf16 else torch.float32
    pipe = sd15_pipeline(device, dtype)
    if args.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    default_steps = call_default(StableDiffusionPipeline, "num_inference_steps")
    default_guidance = call_default(StableDiffusionPipeline, "guidance_scale")
    # A second pipeline object over the same modules: DiffusionGenerator swaps its scheduler.
    gen = DiffusionGenerator(
        StableDiffusionPipeline(**pipe.components),
        sampler="dpm-solver++",
        steps=args.sd_steps,
        guidance_scale=default_guidance,
        prompts="a photo of a {name}",
        class_names=[f"class {i}" for i in range(10)],
        device=device,
        max_batch_size=args.sd_batch_size,
    )
    if args.compile:
        compiled = torch.compile(pipe.unet)
        pipe.unet = compiled
        gen.pipeline.unet = compiled

    def baseline(labels: Sequence[int], seeds: Sequence[int]) -> Any:
        prompts = [f"a photo of a class {label}" for label in labels]
        noise = torch.Generator(device).manual_seed(seeds[0])
        return pipe(prompts, generator=noise, output_type="pt").images

    makers = {
        f"pipeline default: {type(pipe.scheduler).__name__} {default_steps} steps": baseline,
        f"DiffusionGenerator dpm-solver++ {args.sd_steps} steps": gen.generate,
    }
    for make in makers.values():  # warm-up (and compilation) outside the timed rounds
        make([0] * args.sd_batch_size, list(range(args.sd_batch_size)))
    rates: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(args.repeats):
        for name, make in makers.items():
            rates[name].append(images_per_second(make, args.sd_images, args.sd_batch_size, device))
    throughput = {name: statistics.median(v) for name, v in rates.items()}
    base = next(iter(throughput.values()))
    # Classifier-free guidance runs the denoiser on twice the batch.
    flops, achieved = denoiser_tflops(
        pipe.unet, 2 * args.sd_batch_size, dtype, device, args.flop_calls
    )
    peak = bf16_peak(device, args.peak_tflops)
    record = {
        "gpu": torch.cuda.get_device_name(device),
        "dtype": str(dtype),
        "channels_last": args.channels_last,
        "compile": args.compile,
        "resolution": 512,
        "batch_size": args.sd_batch_size,
        "guidance_scale": default_guidance,
        "throughput_images_per_s": throughput,
        "speedup_vs_baseline": {k: v / base for k, v in throughput.items()},
        "denoiser_gflops_per_call": flops / 1e9,
        "denoiser_batch": 2 * args.sd_batch_size,
        "denoiser_tflops_achieved": achieved,
        "bf16_peak_tflops": peak,
        "denoiser_fraction_of_peak": achieved / peak if peak and args.bf16 else None,
    }
    print(
        f"\nSD-1.5 architecture (random weights) on {record['gpu']}, {dtype}, 512x512, batch "
        f"{args.sd_batch_size}, guidance {default_guidance}, channels-last {args.channels_last}, "
        f"compile {args.compile}\n"
    )
    print("| generator | images/s (median) | × baseline |")
    print("|---|---|---|")
    for name, rate in throughput.items():
        print(f"| {name} | {rate:.2f} | {rate / base:.2f} |")
    print(
        f"\ndenoiser: {flops / 1e12:.2f} TFLOP per call (batch {2 * args.sd_batch_size}), "
        f"{achieved:.1f} TFLOP/s achieved"
        + (
            f" = {achieved / peak:.0%} of the {peak:.0f} TFLOP/s bf16 peak"
            if peak and args.bf16
            else ""
        )
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--samples", type=int, default=1000, help="generated images per FID")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--samplers", nargs="+", default=["ddim", "dpm-solver++", "unipc"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--throughput-images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="SD-1.5 part: bf16 weights (default) or float32",
    )
    parser.add_argument("--channels-last", action="store_true", help="SD-1.5 part")
    parser.add_argument(
        "--compile", action="store_true", help="SD-1.5 part: torch.compile the UNet"
    )
    parser.add_argument("--sd-steps", type=int, default=20)
    parser.add_argument("--sd-batch-size", type=int, default=8)
    parser.add_argument("--sd-images", type=int, default=32)
    parser.add_argument("--flop-calls", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the bf16 peak")
    parser.add_argument("--skip-digits", action="store_true", help="CUDA: only the SD-1.5 part")
    parser.add_argument("--out", default="benchmarks/results/speed")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda needs a CUDA GPU; none is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    record: dict[str, Any] = {
        "settings": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
    }
    if not args.skip_digits:
        record["digits"] = digits_part(args, device)
        print_digits(record["digits"], args.steps, args.samplers)
    if args.device == "cuda":
        record["sd15"] = sd15_part(args, device)
    out = Path(args.out).with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
