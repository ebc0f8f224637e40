"""Learning-rate schedules of the training recipes, built per optimizer step.

``conf/scheduler/*.yaml`` names a factory with ``_partial_: true``;
:meth:`SegmentationModule.configure_optimizers` calls it with the optimizer and
``total_iters`` (the trainer's ``estimated_stepping_batches``) and steps it every
optimizer step. Weight averaging (EMA) is Lightning's own callback,
``lightning.pytorch.callbacks.EMAWeightAveraging`` on the training device
(:mod:`segbench.training.ema`, ``callbacks=[default,ema]``).
"""

import logging

import torch
from torch.optim.lr_scheduler import LambdaLR

from segbench.errors import ConfigError

log = logging.getLogger(__name__)


class WarmupPoly:
    """The factor on the base learning rate at optimizer step ``t`` (an ``lr_lambda``).

    ``t < W``: linear warm-up ``s + (1 - s) * t / W`` (PaddleSeg's ``LinearWarmup``
    from ``s * lr`` to ``lr``); then poly decay ``(1 - (t - W) / (T - W)) ** power``
    down to 0 at ``T`` (PaddleSeg's ``PolynomialDecay`` over ``iters - warmup_iters``,
    ``end_lr=0``). A plain object, so the scheduler's ``state_dict`` stores its numbers.

    Args:
        total_iters: ``T``, optimizer steps of the whole run.
        warmup_iters: ``W``, steps of warm-up.
        warmup_start_factor: ``s``, the first step's fraction of the base learning rate.
        power: Poly exponent.
    """

    def __init__(
        self, total_iters: int, warmup_iters: int, warmup_start_factor: float, power: float
    ) -> None:
        self.total_iters, self.warmup_iters = int(total_iters), int(warmup_iters)
        self.warmup_start_factor, self.power = float(warmup_start_factor), float(power)

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            s = self.warmup_start_factor
            return s + (1.0 - s) * step / self.warmup_iters
        decay_steps = max(1, self.total_iters - self.warmup_iters)
        return max(0.0, 1.0 - (step - self.warmup_iters) / decay_steps) ** self.power


def warmup_poly(
    optimizer: torch.optim.Optimizer,
    total_iters: int,
    warmup_iters: int = 200,
    warmup_start_factor: float = 1.0e-3,
    power: float = 0.9,
) -> LambdaLR:
    """Linear warm-up then poly decay, stepped per optimizer step (see :class:`WarmupPoly`).

    A warm-up longer than half the run is shortened to half (and logged): a run too
    short for the configured warm-up still decays instead of ending at its peak rate.

    Args:
        optimizer: The optimizer.
        total_iters: Optimizer steps of the run (filled in by the module).
        warmup_iters: Steps of linear warm-up (PP-LiteSeg CamVid: 200).
        warmup_start_factor: Fraction of the base rate at step 0 (PP-LiteSeg: 1e-5 / 0.01).
        power: Poly exponent (PP-LiteSeg, PIDNet: 0.9).

    Raises:
        ConfigError: a negative warm-up or a start factor outside (0, 1].
    """
    if warmup_iters < 0:
        raise ConfigError("scheduler.warmup_iters", warmup_iters, "is a step count", fix="use >= 0")
    if not 0.0 < warmup_start_factor <= 1.0:
        raise ConfigError(
            "scheduler.warmup_start_factor",
            warmup_start_factor,
            "is a fraction of the base learning rate",
            fix="use 0 < warmup_start_factor <= 1, e.g. 1e-3",
        )
    if warmup_iters > total_iters // 2:
        log.warning(
            "scheduler.warmup_iters=%d is more than half of the run's %d steps: warming up "
            "for %d steps instead",
            warmup_iters,
            total_iters,
            total_iters // 2,
        )
        warmup_iters = total_iters // 2
    factor = WarmupPoly(total_iters, warmup_iters, warmup_start_factor, power)
    log.info(
        "learning rate: linear warm-up over %d steps from %g x, then poly %g to step %d",
        warmup_iters,
        warmup_start_factor,
        power,
        total_iters,
    )
    return LambdaLR(optimizer, factor)
