"""Several training runs in one process, each device step carrying the batches of all of them.

Every run is a whole :class:`lvunet_edge.train.Run`: its own config (seed, recipe arm), data order,
generator, augmentation, slope, Adam state, schedule, BatchNorm statistics, moving average and run
folder with its checkpoints. Only the forward and backward pass are shared: the runs' parameters and
buffers are stacked (``torch.stack``, so the gradients flow back to each run's own parameters) and one
network is evaluated for all of them with ``torch.func.vmap`` over ``functional_call``; vmap turns each
convolution into one grouped convolution and each BatchNorm into per-run statistics, so the device sees
one large batch while every run keeps its own. The BatchNorm running statistics the stacked pass updates
are copied back into each run's model after the step.

A run trained here equals its solo run up to float rounding (the grouped kernels sum in another order);
``tests/training/test_multirun.py`` states the tolerance.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.profiler import record_function
from tqdm import tqdm

from lvunet_edge.blocks import FusibleBlock, SeriesActivation
from lvunet_edge.config import TrainConfig
from lvunet_edge.errors import LVUNetError
from lvunet_edge.train import (
    Batch,
    Run,
    Tally,
    autocast,
    batch_loss,
    build_training,
    end_of_epoch,
    epoch_order,
    final_test,
    load_data,
    next_batch,
    optimizer_step,
    read_resume_state,
    start_run,
)

# What must be equal for runs to share a device step (the stacked tensors need one shape), and what
# cannot be stacked at all.
SHARED = (
    "image_size", "batch_size", "combination", "act_num", "skip", "device", "amp", "channels_last",
)  # fmt: skip


def seed_runs(config: TrainConfig, seeds: Sequence[int]) -> list[TrainConfig]:
    """One config per seed, each into its own folder ``<out>-seed<N>`` (the rest of ``config`` shared)."""
    if len(set(seeds)) != len(seeds):
        raise LVUNetError(f"--seeds names a seed twice: {','.join(map(str, seeds))}")
    return [replace(config, seed=seed, out=f"{config.out}-seed{seed}") for seed in seeds]


def check_compatible(configs: Sequence[TrainConfig]) -> None:
    """Refuse, in one line, runs that cannot share a step."""
    for name in SHARED:
        values = {getattr(c, name) for c in configs}
        if len(values) > 1:
            raise LVUNetError(
                f"runs trained together must share --{name.replace('_', '-')} (got "
                f"{', '.join(map(str, sorted(values, key=str)))}); train them in separate commands"
            )
    for option, refused, why in (
        ("--multi-scale", lambda c: c.multi_scale, "each run draws its own size per batch"),
        ("--deep-supervision", lambda c: c.deep_supervision, "its side heads hook into one model"),
        ("--compile", lambda c: c.compile, "the stacked step is not compiled yet"),
        ("--skip concat", lambda c: c.skip == "concat", "concatenated skips would mix the runs"),
    ):
        if any(refused(c) for c in configs):
            raise LVUNetError(f"{option} cannot train several runs at once ({why})")
    outs = [Path(c.out) for c in configs]
    if len(set(outs)) != len(outs):
        raise LVUNetError("runs trained together need one --out folder each")


def grouped_template(model: nn.Module, count: int) -> nn.Module:
    """``model``'s structure for ``count`` runs side by side along the channels: every convolution
    grouped ``count`` times over, every BatchNorm and depthwise activation ``count`` times as wide. Its
    weights are the runs' own, concatenated along dim 0 at each step (see :class:`StackedStep`)."""
    template = copy.deepcopy(model)
    for module in template.modules():
        if isinstance(module, nn.Conv2d):
            module.in_channels *= count
            module.out_channels *= count
            module.groups *= count
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features *= count
        elif isinstance(module, SeriesActivation):
            module.channels *= count
    return template


class StackedStep:
    """One forward pass for several runs' models (same architecture, additive skips): the runs sit side
    by side along the channel dimension of one batch (run r's image b in row b, channels r*C..(r+1)*C),
    every convolution is grouped so that no channel of one run reaches another's, and BatchNorm
    normalises each channel over its own run's batch: each run's statistics, as alone."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.model = runs[0].model
        self.templates: dict[int, nn.Module] = {}
        self.param_names = [name for name, _ in self.model.named_parameters()]
        self.buffer_names = [name for name, _ in self.model.named_buffers()]
        self.slope_width = {  # the channels each block's LeakyReLU slope applies to
            f"{name}.slope": module.in_channels
            for name, module in self.model.named_modules()
            if isinstance(module, FusibleBlock) and not module.deploy
        }

    def template(self, count: int) -> nn.Module:
        if count not in self.templates:
            self.templates[count] = grouped_template(self.model, count)
        template = self.templates[count]
        template.train(self.model.training)
        return template

    def train_step(
        self, runs: Sequence[Run], batches: Sequence[Batch], tallies: Sequence[Tally]
    ) -> None:
        """One device step for several runs: one stacked forward and backward, then each run's update."""
        x = torch.cat([b.x for b in batches], 1)
        if runs[0].config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with record_function("forward"), autocast(runs[0]):
            logits = self(runs, x)
        losses = [
            batch_loss(run, logits[j], [], b.targets)
            for j, (run, b) in enumerate(zip(runs, batches, strict=True))
        ]
        for run in runs:
            run.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            torch.stack(losses).sum().backward()  # the runs are independent: each its own gradient
        for j, (run, b, tally) in enumerate(zip(runs, batches, tallies, strict=True)):
            optimizer_step(run, b)
            tally.add(run, logits[j], losses[j], b.targets[:, :1])

    def __call__(self, runs: Sequence[Run], x: torch.Tensor) -> list[torch.Tensor]:
        """Each run's logits (B, classes, H, W) for the runs' inputs side by side (B, R*3, H, W);
        each run's BatchNorm statistics updated from its own batch."""
        params = [dict(run.model.named_parameters()) for run in runs]
        buffers = [dict(run.model.named_buffers()) for run in runs]
        joined = {n: torch.cat([p[n] for p in params]) for n in self.param_names}
        with torch.no_grad():
            state = {n: self.joined_buffer(n, buffers) for n in self.buffer_names}
            before = {n: buffers[0][n].clone() for n in state if state[n].dim() == 0}
        logits = functional_call(self.template(len(runs)), (joined, state), (x,))
        with torch.no_grad():  # the running statistics (and batch counters) back into each model
            for name, value in state.items():
                if name in self.slope_width:
                    continue
                if value.dim() == 0:  # num_batches_tracked: each run's own counter moves as much
                    for b in buffers:
                        b[name].add_(value - before[name])
                    continue
                for b, part in zip(buffers, value.chunk(len(runs)), strict=True):
                    b[name].copy_(part)
        return list(logits.chunk(len(runs), 1))

    def joined_buffer(self, name: str, buffers: list[dict]) -> torch.Tensor:
        if name in self.slope_width:  # one slope per run, over the channels of its block
            width = self.slope_width[name]
            return torch.cat([b[name].reshape(1).expand(width) for b in buffers]).view(-1, 1, 1)
        if buffers[0][name].dim() == 0:
            return buffers[0][name].clone()
        return torch.cat([b[name] for b in buffers])


def train_many(
    configs: Sequence[TrainConfig] | None = None,
    *,
    resume: Sequence[str | Path] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    hint: str | None = None,
) -> list[dict]:
    """Train several runs together (new ``configs``, or the ``resume`` folders' runs), each as
    :func:`lvunet_edge.train.train` would alone. Returns each run's metrics (empty when stopped early).
    ``hint`` is how to continue them all (``--resume OUT --seeds ...``), said when they stop early."""
    if resume:
        states = [read_resume_state(folder) for folder in resume]
        configs = [
            replace(TrainConfig.from_dict(s["train_config"]), out=str(f))
            for s, f in zip(states, resume, strict=True)
        ]
    else:
        states = [None] * len(configs)
    check_compatible(configs)
    runs = []
    for config, state in zip(configs, states, strict=True):
        run = start_run(config, state)
        if run.world > 1:
            raise LVUNetError("several runs in one process cannot also train with DDP (torchrun)")
        load_data(run, state)
        build_training(run, state)
        runs.append(run)
    ends = [
        r.config.epochs if stop_after is None else min(r.config.epochs, r.start_epoch + stop_after)
        for r in runs
    ]
    step = StackedStep(runs)
    rounds = max(end - r.start_epoch for r, end in zip(runs, ends, strict=True))
    for offset in range(rounds):
        active = [
            (r, r.start_epoch + offset)
            for r, end in zip(runs, ends, strict=True)
            if r.start_epoch + offset < end
        ]
        started = time.perf_counter()
        stats = train_epochs_together(step, active, progress)
        for (run, epoch), stat in zip(active, stats, strict=True):
            end_of_epoch(run, epoch, stat, started)
    results = []
    for run, end in zip(runs, ends, strict=True):
        if end < run.config.epochs:
            run.log(f"stopped after epoch {end}; continue with {hint or f'--resume {run.run_dir}'}")
            results.append({})
        else:
            results.append(final_test(run))
    return results


def train_epochs_together(
    step: StackedStep, active: Sequence[tuple[Run, int]], progress: bool
) -> list[dict[str, Any]]:
    """One epoch of each active run; each device step carries one batch of every run that has one left."""
    orders, tallies = [], []
    for run, _ in active:
        run.net.train()
        orders.append(epoch_order(run))
        tallies.append(Tally(run.device))
    steps = max(run.steps_per_epoch for run, _ in active)
    label = ", ".join(f"{run.run_dir.name} {epoch + 1}" for run, epoch in active)
    for s in tqdm(range(steps), desc=f"epochs {label}", disable=not progress, leave=False):
        now = [i for i, (run, _) in enumerate(active) if s < run.steps_per_epoch]
        runs = [active[i][0] for i in now]
        batches = [
            next_batch(run, orders[i], active[i][1], s) for i, run in zip(now, runs, strict=True)
        ]
        step.train_step(runs, batches, [tallies[i] for i in now])
    for run, _ in active:
        run.scheduler.step()
    return [t.stats() for t in tallies]
