"""The loss registry: one :class:`Loss` per loss name, its formulas in :mod:`ganstudy.loss_functions`.

A :class:`Loss` names its discriminator and generator functions, says whether the discriminator
loss needs the gradient penalty, carries the LSGAN coding (a, b, c) where it applies, and its
role in the study's comparison: ``baseline`` (what the others are compared with) or
``candidate`` (compared with the baseline). A study config may name other ones.

This module imports no torch: run configs are checked against it when the Snakefile is parsed;
:func:`build_loss` loads the formulas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ganstudy.errors import ConfigError

ROLES = ("baseline", "candidate")


@dataclass(frozen=True)
class Loss:
    name: str
    # Functions of ganstudy.loss_functions, by name, or the functions themselves.
    d_loss: str | Callable
    g_loss: str | Callable
    description: str
    gradient_penalty: bool = False
    coding: tuple[float, float, float] | None = None
    role: str | None = None

    def functions(self) -> tuple[Callable, Callable]:
        """The (discriminator, generator) loss functions."""
        from ganstudy import loss_functions

        return tuple(
            getattr(loss_functions, f) if isinstance(f, str) else f
            for f in (self.d_loss, self.g_loss)
        )


LSGAN_PRESETS = {"lsgan": (0.0, 1.0, 1.0), "lsgan_chi2": (-1.0, 1.0, 0.0)}

LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("gan", "gan_d_loss", "gan_ns_g_loss", "standard GAN, non-saturating G loss",
             role="baseline"),
        Loss("gan_minimax", "gan_d_loss", "gan_minimax_g_loss",
             "standard GAN, saturating (minimax) G loss"),
        Loss("lsgan", "lsgan_d_loss", "lsgan_g_loss",
             "least squares GAN, 0-1 coding (a, b, c) = (0, 1, 1)",
             coding=LSGAN_PRESETS["lsgan"], role="candidate"),
        Loss("lsgan_chi2", "lsgan_d_loss", "lsgan_g_loss",
             "least squares GAN, (a, b, c) = (-1, 1, 0): b - c = 1, b - a = 2 (Pearson chi^2)",
             coding=LSGAN_PRESETS["lsgan_chi2"], role="candidate"),
        Loss("l1", "l1_d_loss", "l1_g_loss", "L1 GAN with an unbounded discriminator"),
        Loss("wgan_gp", "wasserstein_d_loss", "wasserstein_g_loss",
             "Wasserstein GAN with gradient penalty", gradient_penalty=True),
        Loss("hinge", "hinge_d_loss", "wasserstein_g_loss", "hinge loss"),
    )
}  # fmt: skip


def with_role(role: str) -> list[str]:
    """The losses of a role (``baseline`` or ``candidate``), in registry order."""
    return [name for name, loss in LOSSES.items() if loss.role == role]


@dataclass(frozen=True)
class Comparison:
    """Which losses the report compares: every candidate against the baseline.

    The default takes the roles of the loss registry (``gan`` against every LSGAN loss); a
    study config's ``compare`` key names others.
    """

    baseline: str
    candidates: tuple[str, ...]

    @classmethod
    def from_config(cls, config: dict | None = None) -> Comparison:
        """The ``compare`` settings of a study config (None or absent keys: the roles)."""
        settings = (config or {}).get("compare") or {}
        baseline = settings.get("baseline") or with_role("baseline")[0]
        candidates = settings.get("candidates") or with_role("candidate")
        for key, names in (("baseline", [baseline]), ("candidates", candidates)):
            unknown = [n for n in names if n not in LOSSES]
            if unknown:
                raise ConfigError(
                    f"key 'compare.{key}': {unknown[0]!r} is not a loss; allowed: "
                    f"{', '.join(LOSSES)}"
                )
        if baseline in candidates:
            raise ConfigError(
                f"key 'compare.candidates': {baseline!r} is the baseline; allowed: other losses"
            )
        return cls(baseline, tuple(candidates))

    def is_candidate(self, runs):
        """Rows of a runs table (columns ``loss``, ``loss_label``) that are candidate runs, by loss
        name, so every coding of a candidate counts."""
        return runs["loss"].isin(self.candidates) & (runs["loss_label"] != self.baseline)

    def is_compared(self, runs):
        """Rows of the baseline or of a candidate."""
        return (runs["loss_label"] == self.baseline) | self.is_candidate(runs)


def resolve_coding(loss_cfg) -> tuple[float | None, float | None, float | None]:
    """The (a, b, c) coding of an LSGAN loss config: explicit values override the preset.

    Non-LSGAN losses take no coding; setting one there is an error.
    """
    given = (loss_cfg.a, loss_cfg.b, loss_cfg.c)
    preset = LOSSES[loss_cfg.name].coding
    if preset is None:
        if any(v is not None for v in given):
            raise ConfigError(
                f"keys 'loss.a/b/c': {given} given for loss '{loss_cfg.name}', which has no "
                f"coding; allowed only for: {', '.join(LSGAN_PRESETS)}"
            )
        return None, None, None
    return tuple(p if v is None else float(v) for v, p in zip(given, preset))


def build_loss(loss_cfg) -> tuple[Callable, Callable, bool]:
    """The (d_loss, g_loss, needs_gradient_penalty) triple of a validated loss config."""
    loss = LOSSES[loss_cfg.name]
    d_loss, g_loss = loss.functions()
    if loss.coding is None:
        return d_loss, g_loss, loss.gradient_penalty
    a, b, c = resolve_coding(loss_cfg)
    return partial(d_loss, a=a, b=b), partial(g_loss, c=c), loss.gradient_penalty
