"""Training speed, side by side in one process: today's step against the code before issue #24, N runs
trained together, and the fused model's inference at the same total batch; optionally a profile.

Arms (interleaved: every round times each arm once, medians over rounds):
  before      the step as it was (contiguous NCHW, Adam's per-parameter loop, float32 on a CPU): the code
              until #24
  after       the step now (channels_last, fused Adam, no host sync per step; bfloat16 autocast on
              CUDA and on CPUs with AVX512-BF16/AMX)
  after-fp32  the step now in float32 (on a CPU with bfloat16 instructions: what the layout alone gives)
  compiled    after + torch.compile (with --compile; its compile time is measured and reported apart)
  runs-N      N runs trained together (lvunet_edge.multirun.StackedStep), images/s summed over runs
  inference   the fused (deployment) model, eval mode, no autograd, at batch B and at batch N x B

Each arm trains real runs on decoded data with the recipe's augmentation (``--augment``), through the
same functions lvunet-train calls (``next_batch``, ``train_step``, ``StackedStep.train_step``).

  CPU:  python benchmarks/train_speed.py --data ../shared/data/kvasir-seg --out benchmarks/results/train-speed/cpu.json --profile
  GPU:  python benchmarks/train_speed.py --data .data/kvasir-seg --device cuda --runs 8 --out /tmp/out/train-speed.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "runtime")]

from timing import interleaved, machine_header, time_once  # noqa: E402

from lvunet_edge.config import TrainConfig  # noqa: E402
from lvunet_edge.multirun import StackedStep  # noqa: E402
from lvunet_edge.reparam import reparameterize_model, set_act_slope  # noqa: E402
from lvunet_edge.train import (  # noqa: E402
    Run,
    Tally,
    build_training,
    cpu_has_bf16,
    end_of_epoch,
    epoch_order,
    load_data,
    next_batch,
    start_run,
    train_step,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_run(config: TrainConfig, shared: Run | None) -> Run:
    """A run as lvunet-train builds it; the decoded data of ``shared`` reused (decoded once)."""
    run = start_run(config, None)
    if shared is None:
        load_data(run, None)
    else:
        for name in ("split", "sets", "images", "masks", "contract", "data_warnings"):
            setattr(run, name, getattr(shared, name))
    build_training(run, None)
    run.net.train()
    return run


def as_before(run: Run) -> Run:
    """The step before #24: NCHW weights and Adam without fused kernels (foreach off, as on CPU)."""
    run.model.to(memory_format=torch.contiguous_format)
    run.optimizer = torch.optim.Adam(run.model.parameters(), lr=run.config.lr, foreach=False)
    return run


class Arm:
    """A way of training, timed ``steps`` device steps at a time."""

    def __init__(self, name: str, runs: list[Run], stacked: bool = False) -> None:
        self.name, self.runs = name, runs
        self.step = StackedStep(runs) if stacked else None
        self.orders = [epoch_order(r) for r in runs]
        self.at = 0

    @property
    def images_per_step(self) -> int:
        return sum(r.config.batch_size for r in self.runs)

    def batches(self) -> list:
        run0 = self.runs[0]
        if self.at >= run0.steps_per_epoch:
            self.orders, self.at = [epoch_order(r) for r in self.runs], 0
        out = [next_batch(r, o, 0, self.at) for r, o in zip(self.runs, self.orders, strict=True)]
        self.at += 1
        return out

    def one(self) -> None:
        batches = self.batches()
        tallies = [Tally(r.device) for r in self.runs]
        if self.step is not None:
            self.step.train_step(self.runs, batches, tallies)
        else:
            train_step(self.runs[0], batches[0], tallies[0])

    def result(self, timed: dict) -> dict:
        step_s = timed["median_ms"] / 1e3
        return {
            "runs": len(self.runs),
            "images_per_step": self.images_per_step,
            "step_s_median": step_s,
            "step_s_round_spread": [timed["round_min_ms"] / 1e3, timed["round_max_ms"] / 1e3],
            "images_per_s": self.images_per_step / step_s,
            "images_per_s_round_spread": [
                self.images_per_step * 1e3 / timed["round_max_ms"],
                self.images_per_step * 1e3 / timed["round_min_ms"],
            ],
            "steps_timed": timed["calls"],
        }


def inference_rates(run: Run, batches: list[int], rounds: int) -> list[dict]:
    """The fused model's forward at each batch size (eval, channels_last, bf16 autocast on CUDA as
    trained), interleaved."""
    set_act_slope(run.model, 1.0)  # the end of deep training: the block fuses
    model = reparameterize_model(run.model).eval()
    size, use_amp = run.config.image_size, run.device.type == "cuda"

    def forward(batch: int):
        x = torch.randn(batch, 3, size, size, device=run.device)
        x = x.contiguous(memory_format=torch.channels_last)

        @torch.no_grad()
        def call() -> None:
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=use_amp):
                model(x)

        return call

    timed = interleaved(
        {b: forward(b) for b in batches},
        rounds=rounds,
        runs=3,
        warmup=2,
        sync=lambda: sync(run.device),
    )
    return [
        {
            "batch": b,
            "step_s_median": t["median_ms"] / 1e3,
            "images_per_s": b * 1e3 / t["median_ms"],
        }
        for b, t in timed.items()
    ]


def profile_epoch_parts(run: Run, steps: int) -> dict:
    """torch.profiler over ``steps`` training steps, then apart over one epoch end (validation and
    checkpoint): seconds per part per epoch, each part's share, and the step's top operators."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if run.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    arm = Arm("profiled", [run])
    arm.one()  # warm
    with profile(activities=activities) as steps_profile:
        for _ in range(steps):
            arm.one()
    with profile(activities=activities) as end_profile:
        end_of_epoch(run, 0, {"train_loss": 0.0, "train_iou": 0.0}, time.perf_counter())

    def totals(prof, labels):
        return {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in labels}

    per_step = totals(steps_profile, {"augment", "forward", "backward", "optimizer"})
    per_epoch = {k: v / steps * run.steps_per_epoch for k, v in per_step.items()}
    per_epoch.update(totals(end_profile, {"validation", "checkpoint"}))
    epoch = sum(per_epoch.values())
    ops = [e for e in steps_profile.key_averages() if e.key.startswith("aten::")]
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:12]
    kinds = {"convolution": 0.0, "batch_norm": 0.0, "other": 0.0}
    for e in ops:
        kind = next((k for k in ("convolution", "batch_norm") if k in e.key), "other")
        kinds[kind] += e.self_cpu_time_total / 1e6 / steps
    return {
        "steps": steps,
        "steps_per_epoch": run.steps_per_epoch,
        "per_epoch_s": per_epoch,
        "epoch_share": {k: v / epoch for k, v in per_epoch.items()},
        "step_self_s_by_kind": kinds,
        "top_ops_self_s_per_step": {e.key: e.self_cpu_time_total / 1e6 / steps for e in top},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file", help="test ids (default: the random split)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--augment", default="strong")
    parser.add_argument("--runs", type=int, default=3, help="runs trained together (0: skip)")
    parser.add_argument("--steps", type=int, default=4, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--no-before", action="store_true", help="skip the before arm")
    parser.add_argument("--profile", action="store_true", help="profile the before and after steps")
    parser.add_argument("--out", required=True, help="JSON file of results")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="train-speed-"))
    base = TrainConfig(
        data=args.data, out=str(tmp / "r0"), image_size=args.size, batch_size=args.batch,
        epochs=100, augment=args.augment, device=args.device, workers=4, seed=1,
        split_file=args.split_file,
    )  # fmt: skip
    first = make_run(base, None)
    device = first.device

    def fresh(name: str, **changes) -> Run:
        return make_run(replace(base, out=str(tmp / name), **changes), first)

    arms = [Arm("after", [first])]
    if not args.no_before:
        before = fresh("before", channels_last=False, amp=False)
        arms.insert(0, Arm("before", [as_before(before)]))
        if before.device.type == "cpu" and cpu_has_bf16():  # what float32 alone gives, apart
            arms.insert(1, Arm("after-fp32", [fresh("after-fp32", amp=False)]))
    if args.runs > 1:
        group = [fresh(f"runs{i}", seed=i + 1) for i in range(args.runs)]
        arms.append(Arm(f"runs-{args.runs}", group, stacked=True))
    result: dict = machine_header(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        settings={
            k: getattr(args, k) for k in ("size", "batch", "augment", "runs", "steps", "rounds")
        },
        train_images=len(first.sets["train"].ids),
    )
    if args.compile:
        compiled = fresh("compiled", compile=True)
        arm = Arm("compiled", [compiled])
        result["compile_first_step_s"] = time_once(lambda: (arm.one(), sync(device)))
        arms.append(arm)
    timed = interleaved(
        {arm.name: arm.one for arm in arms},
        rounds=args.rounds,
        runs=args.steps,
        warmup=1,
        sync=lambda: sync(device),
    )
    result["arms"] = {arm.name: arm.result(timed[arm.name]) for arm in arms}
    batches = sorted({args.batch, args.batch * max(args.runs, 1)})
    result["inference"] = inference_rates(fresh("infer"), batches, args.rounds)
    arms_out = result["arms"]
    if "before" in arms_out:
        result["after_over_before"] = (
            arms_out["after"]["images_per_s"] / arms_out["before"]["images_per_s"]
        )
    if f"runs-{args.runs}" in arms_out:
        result["runs_over_after"] = (
            arms_out[f"runs-{args.runs}"]["images_per_s"] / arms_out["after"]["images_per_s"]
        )
    rates = {i["batch"]: i["images_per_s"] for i in result["inference"]}
    result["training_over_inference"] = {
        arm: r["images_per_s"] / rates[r["images_per_step"]]
        for arm, r in arms_out.items() if r["images_per_step"] in rates
    }  # fmt: skip
    if args.profile:
        result["profile"] = {"after": profile_epoch_parts(fresh("prof-after"), args.steps)}
        if not args.no_before:
            before = as_before(fresh("prof-before", channels_last=False, amp=False))
            result["profile"]["before"] = profile_epoch_parts(before, args.steps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for name, r in arms_out.items():
        print(
            f"{name}: {r['images_per_s']:.1f} images/s ({r['runs']} run(s), {r['images_per_step']} images/step)"
        )
    for r in result["inference"]:
        print(f"inference batch {r['batch']}: {r['images_per_s']:.1f} images/s")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
