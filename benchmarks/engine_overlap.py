"""Overlap: background generation hides generation time behind the training step.

For a workload whose training step costs T_t per batch and whose generation costs T_g
per batch, synchronous generation costs about sum(T_t) + sum(T_g) per run; the thread
engine should cost at most 1.10 x max(sum(T_t), sum(T_g)). Both sums are measured alone
in the same run, then the synchronous and the thread engine run the same epochs.

Workloads: ``sleep`` (generation on another device, say), ``matmul`` (CPU kernels that
release the GIL) and ``diffusion`` (a small class-conditional UNet sampled with DDIM,
trained against a small CNN). With ``--workload diffusion --device cuda`` generation and
training share the GPU, generation on its own CUDA stream. On the CPU the record also
holds ``cpu_parallelism``: how much faster two threads of kernels run than one after
the other right now (about 2 with two free cores, about 1 when other work holds a core,
and then no engine can overlap CPU-bound generation with training).

    python benchmarks/engine_overlap.py --workload sleep
    python benchmarks/engine_overlap.py --workload matmul
    python benchmarks/engine_overlap.py --workload diffusion [--device cuda]
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from diffusers import DDPMScheduler, UNet2DModel
from engine_common import (
    NoiseGenerator,
    burn_matmul,
    calibrate_matmul,
    cpu_parallelism,
    parser,
    real_loader,
    timed,
    write_json,
)

from gdaload import ClassConditionalPipeline, DiffusionGenerator, GenerativeLoader, Generator

Step = Callable[[torch.Tensor, torch.Tensor], None]


def diffusion_generator(device: str, steps: int) -> DiffusionGenerator:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=11,
    )
    return DiffusionGenerator(
        ClassConditionalPipeline(unet, DDPMScheduler()), sampler="ddim", steps=steps, device=device
    )


def cnn_step(seconds: float, device: str, batch: int) -> Step:
    """A CNN's forward/backward/update, repeated to take about ``seconds`` per batch."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def once(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the GPU, as a logging loop would

    x, y = torch.rand(batch, 3, 32, 32), torch.arange(batch) % 10
    once(x, y)
    start = time.perf_counter()
    for _ in range(5):
        once(x, y)
    reps = max(1, round(seconds / ((time.perf_counter() - start) / 5)))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        for _ in range(reps):
            once(x, y)

    return step


def make_workload(args) -> tuple[Generator, Step]:
    batch = args.batch_size + args.synthetic_per_batch
    if args.workload == "sleep":
        return (
            NoiseGenerator(cost="sleep", seconds=args.gen_ms / 1000),
            lambda x, y: time.sleep(args.train_ms / 1000),
        )
    if args.workload == "matmul":
        reps = calibrate_matmul(args.train_ms / 1000, 256)
        return (
            NoiseGenerator(cost="matmul", seconds=args.gen_ms / 1000),
            lambda x, y: burn_matmul(reps, 256),
        )
    gen = diffusion_generator(args.device, args.steps)
    labels = torch.arange(args.synthetic_per_batch) % 10
    gen.generate(labels, list(range(len(labels))))  # first-call overheads
    start = time.perf_counter()
    gen.generate(labels, list(range(len(labels))))
    per_block = time.perf_counter() - start
    # Balanced by default: training as slow as generation is the hardest case to overlap.
    seconds = args.train_ms / 1000 if args.train_ms else per_block
    return gen, cnn_step(seconds, args.device, batch)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--workload", choices=["sleep", "matmul", "diffusion"], default="sleep")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, default=20, help="real batches per epoch")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--synthetic-per-batch", type=int, default=16)
    p.add_argument("--train-ms", type=float, default=50.0, help="T_t (diffusion: 0 = match T_g)")
    p.add_argument("--gen-ms", type=float, default=50.0, help="T_g per batch (sleep, matmul)")
    p.add_argument("--steps", type=int, default=10, help="diffusion sampler steps")
    p.add_argument("--pool-size", type=int, default=64)
    args = p.parse_args()
    if args.workload == "diffusion" and args.train_ms == 50.0:
        args.train_ms = 0.0
    torch.set_num_threads(args.threads)
    generator, step = make_workload(args)
    loader = real_loader(args.batches * args.batch_size, args.batch_size)
    ratio = args.synthetic_per_batch / args.batch_size
    n = args.synthetic_per_batch
    fake = torch.rand(n, 3, 32, 32)

    def train_alone() -> None:
        for _ in range(args.epochs):
            for x, y in loader:
                step(torch.cat([x, fake]), torch.cat([y, y[:n]]))

    def generate_alone() -> None:
        for e in range(args.epochs):
            for b in range(args.batches):
                generator.generate(torch.arange(n) % 10, [e * 10**6 + b * n + i for i in range(n)])

    def through(engine: str) -> dict[str, float]:
        kwargs = {}
        if engine == "thread":
            kwargs = dict(pool_size=args.pool_size, generation_batch_size=n)
        gen_loader = GenerativeLoader(loader, generator, ratio=ratio, engine=engine, **kwargs)
        start = time.perf_counter()
        with gen_loader:
            for _ in range(args.epochs):
                for x, y in gen_loader:
                    step(x, y)
        return {"seconds": time.perf_counter() - start, **gen_loader.stats()}

    parallelism = cpu_parallelism() if args.device == "cpu" else None
    train_s = timed(train_alone)
    gen_s = timed(generate_alone)
    sync = through("sync")
    thread = through("thread")
    bound = max(train_s, gen_s)
    record = {
        "workload": args.workload,
        "device": args.device,
        "epochs": args.epochs,
        "batches_per_epoch": args.batches,
        "real_per_batch": args.batch_size,
        "synthetic_per_batch": n,
        "threads": args.threads,
        "sum_train_seconds": train_s,
        "sum_generation_seconds": gen_s,
        "sync_seconds": sync["seconds"],
        "thread_seconds": thread["seconds"],
        "sync_over_sum": sync["seconds"] / (train_s + gen_s),
        "thread_over_max": thread["seconds"] / bound,
        "speedup": sync["seconds"] / thread["seconds"],
        "thread_wait_seconds": thread["wait_seconds"],
        "cpu_parallelism": parallelism,
        "goal_thread_over_max": 1.10,
    }
    print(
        f"[{args.workload}/{args.device}] sum T_t {train_s:.2f}s  sum T_g {gen_s:.2f}s  "
        f"sync {sync['seconds']:.2f}s ({record['sync_over_sum']:.2f} x sum)  "
        f"thread {thread['seconds']:.2f}s ({record['thread_over_max']:.2f} x max, goal <= 1.10)  "
        f"speed-up {record['speedup']:.2f}x  loop waited {thread['wait_seconds']:.2f}s"
        + (f"  [2-thread CPU parallelism now: {parallelism:.2f}x]" if parallelism else "")
    )
    write_json(f"overlap-{args.workload}-{args.device.split(':')[0]}", record, args.out)


if __name__ == "__main__":
    main()
