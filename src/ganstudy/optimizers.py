"""The optimizer and D learning-rate schedule registries: ``OPTIMIZERS`` and ``D_LR_SCHEDULES``.

An entry names the ``train`` keys it reads, each with its default and allowed values, and the
function of :mod:`ganstudy.train.updates` that implements it. The keys of an optimizer or a
schedule that is not chosen stay unset (null): a run config that sets them is refused, so a
config never carries a setting that did nothing (:func:`resolve_settings` fills and checks a run
config's keys). This module imports no torch: run configs are checked against it when the
Snakefile is parsed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ganstudy.errors import require
from ganstudy.losses import LOSSES, ideal_d_loss


@dataclass(frozen=True)
class Setting:
    """One ``train`` key of an optimizer or a schedule."""

    default: float
    check: Callable[[float], bool]
    allowed: str
    description: str


def _unit_interval(value: float) -> bool:
    return 0 <= value < 1


def _positive(value: float) -> bool:
    return value > 0 and math.isfinite(value)


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    # A function of ganstudy.train.updates: (params, lr, train config) -> torch optimizer.
    build: str
    settings: dict[str, Setting]
    # Per-parameter state that carries the direction of the next update: a frozen (diverged)
    # ensemble member has it zeroed with its gradient, so the optimizer leaves it where it is.
    direction_state: tuple[str, ...]
    description: str


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            "adam",
            "adam",
            {
                "beta1": Setting(0.5, _unit_interval, "a number in [0, 1)", "Adam beta1"),
                "beta2": Setting(0.999, _unit_interval, "a number in [0, 1)", "Adam beta2"),
            },
            ("exp_avg",),
            "Adam (Kingma & Ba 2015), torch.optim.Adam",
        ),
        OptimizerSpec(
            "rmsprop",
            "rmsprop",
            {
                "rmsprop_alpha": Setting(
                    0.99, _unit_interval, "a number in [0, 1)",
                    "RMSProp smoothing constant of the squared-gradient average",
                ),
                "rmsprop_eps": Setting(1e-8, _positive, "a positive number", "RMSProp epsilon"),
                "rmsprop_momentum": Setting(
                    0.0, _unit_interval, "a number in [0, 1)", "RMSProp momentum"
                ),
            },
            ("momentum_buffer",),
            "RMSProp (Tieleman & Hinton 2012), torch.optim.RMSprop (not centered)",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    # A class of ganstudy.train.updates built from (train config, ideal D loss, members, device);
    # None: D's learning rate stays lr_d.
    build: str | None
    settings: dict[str, Setting] = field(default_factory=dict)
    # Whether the schedule needs the loss's ideal D loss (losses.ideal_d_loss).
    needs_ideal_loss: bool = False
    description: str = ""


D_LR_SCHEDULES: dict[str, ScheduleSpec] = {
    spec.name: spec
    for spec in (
        ScheduleSpec("none", None, description="D's learning rate is lr_d throughout"),
        # The constants of Hazimeh & Ponomareva (AISTATS 2023) and of their reference code
        # (google-research, adversarial_nets_lr_scheduler/demo.ipynb).
        ScheduleSpec(
            "gap_aware",
            "GapAwareSchedule",
            {
                "gap_ema": Setting(
                    0.95, _unit_interval, "a number in [0, 1)",
                    "weight of the old value in the moving average of D's loss",
                ),
                "gap_h_min": Setting(
                    0.1, lambda v: 0 < v <= 1, "a number in (0, 1]",
                    "smallest factor of lr_d (reached when D's loss is x_min below the ideal)",
                ),
                "gap_f_max": Setting(
                    2.0, lambda v: 1 <= v < math.inf, "a number >= 1",
                    "largest factor of lr_d (reached when D's loss is x_max above the ideal)",
                ),
                "gap_x_min": Setting(
                    0.1, _positive, "a positive number",
                    "x_min as a fraction of the ideal loss: the gap below it where h_min is reached",
                ),
                "gap_x_max": Setting(
                    0.1, _positive, "a positive number",
                    "x_max as a fraction of the ideal loss: the gap above it where f_max is reached",
                ),
            },
            needs_ideal_loss=True,
            description="gap-aware schedule of D's learning rate (Hazimeh & Ponomareva 2023)",
        ),
    )
}  # fmt: skip


def setting_owners() -> dict[str, str]:
    """Each optimizer or schedule key -> the key that chooses its owner (``train.optimizer`` or
    ``train.d_lr_schedule``) and the owner's name, as ``'optimizer=adam'``."""
    owners = {}
    for spec in OPTIMIZERS.values():
        owners.update({key: f"optimizer={spec.name}" for key in spec.settings})
    for spec in D_LR_SCHEDULES.values():
        owners.update({key: f"d_lr_schedule={spec.name}" for key in spec.settings})
    return owners


def resolve_settings(train, loss):
    """A run's ``train`` config (a config.TrainConfig) with the keys of its chosen optimizer and
    schedule filled with their defaults and checked; the keys of the others must be unset. A
    schedule that needs the ideal D loss needs a loss (the resolved config.LossConfig ``loss``)
    with a known, positive one. Called by config.validate."""
    require(
        train.optimizer in OPTIMIZERS, "train.optimizer", train.optimizer, ", ".join(OPTIMIZERS)
    )
    require(
        train.d_lr_schedule in D_LR_SCHEDULES,
        "train.d_lr_schedule",
        train.d_lr_schedule,
        ", ".join(D_LR_SCHEDULES),
    )
    chosen = {
        "optimizer": OPTIMIZERS[train.optimizer],
        "d_lr_schedule": D_LR_SCHEDULES[train.d_lr_schedule],
    }
    resolved = {}
    for choice, registry in (("optimizer", OPTIMIZERS), ("d_lr_schedule", D_LR_SCHEDULES)):
        for spec in registry.values():
            for key, setting in spec.settings.items():
                value = getattr(train, key)
                if spec is not chosen[choice]:
                    require(
                        value is None,
                        f"train.{key}",
                        value,
                        f"null: it is a key of {choice} {spec.name!r}, and train.{choice} is "
                        f"{getattr(train, choice)!r}",
                    )
                    continue
                value = setting.default if value is None else value
                require(setting.check(value), f"train.{key}", value, setting.allowed)
                resolved[key] = value
    schedule = chosen["d_lr_schedule"]
    if schedule.needs_ideal_loss:
        ideal = ideal_d_loss(loss)
        known = [n for n, spec in LOSSES.items() if spec.ideal_d_loss is not None]
        require(
            ideal is not None,
            "train.d_lr_schedule",
            train.d_lr_schedule,
            f"none for loss {loss.name!r}, which has no known ideal D loss; "
            f"{schedule.name} needs one of: {', '.join(known)}",
        )
        require(
            ideal > 0,
            "train.d_lr_schedule",
            train.d_lr_schedule,
            f"none for loss {loss.name!r} with an ideal D loss of {ideal:g}; {schedule.name} "
            "scales its gaps by the ideal loss, which must be positive (LSGAN: a != b)",
        )
    return dataclasses.replace(train, **resolved)
