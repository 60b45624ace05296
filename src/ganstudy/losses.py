"""The loss registry: one :class:`Loss` per loss name, its formulas in :mod:`ganstudy.loss_functions`.

A :class:`Loss` names its discriminator and generator functions, says whether the discriminator
loss needs the gradient penalty, carries the LSGAN coding (a, b, c) or the (alpha_D, alpha_G)
pair where they apply, the loss an ideal discriminator has at the equilibrium (what the
gap-aware learning-rate schedule steers D's loss towards), and its role in the study's
comparison: ``baseline`` (what the others are compared with) or ``candidate`` (compared with
the baseline). A study config may name other ones.

This module imports no torch: run configs are checked against it when the Snakefile is parsed;
:func:`build_loss` loads the formulas.
"""

from __future__ import annotations

import math
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
    # (alpha_D, alpha_G) of the (alpha_D, alpha_G)-GAN: the values the config keys default to.
    alphas: tuple[float, float] | None = None
    # The ideal D loss V*: a function of the resolved loss config, or None where no constant is
    # known (then the gap-aware schedule cannot be used).
    ideal_d_loss: Callable | None = None
    role: str | None = None

    def functions(self) -> tuple[Callable, Callable]:
        """The (discriminator, generator) loss functions."""
        from ganstudy import loss_functions

        return tuple(
            getattr(loss_functions, f) if isinstance(f, str) else f
            for f in (self.d_loss, self.g_loss)
        )


LSGAN_PRESETS = {"lsgan": (0.0, 1.0, 1.0), "lsgan_chi2": (-1.0, 1.0, 0.0)}

# -- ideal discriminator losses ----------------------------------------------------------------
# V* is D's loss when the generator's distribution equals the data's (p_g = p_d) and D is the best
# response to it: the value Hazimeh & Ponomareva (AISTATS 2023, Table 1) keep D's loss near. At
# p_g = p_d, D sees the same x labelled real and fake equally often, so its best output is the
# pointwise minimiser m of loss_real(D) + loss_fake(D), and V* = loss_real(m) + loss_fake(m).


def _ideal_cross_entropy(loss_cfg) -> float:
    """Standard GAN: -log s - log(1 - s) is least at s = sigmoid(D) = 1/2: V* = 2 log 2 = log 4."""
    return math.log(4.0)


def _ideal_least_squares(loss_cfg) -> float:
    """LSGAN, 1/2 (D - b)^2 + 1/2 (D - a)^2, least at D = (a + b) / 2: V* = (b - a)^2 / 4
    (0.25 for the coding (0, 1, 1), 1 for (-1, 1, 0))."""
    return (loss_cfg.b - loss_cfg.a) ** 2 / 4


def _ideal_least_squares_sigmoid(loss_cfg) -> float:
    """Least squares on sigmoid(D), 1/2 (s - 1)^2 + 1/2 s^2 with s = sigmoid(D), is least at
    s = 1/2 (D = 0): V* = 1/2 (1/4 + 1/4) = 1/4."""
    return 0.25


def _ideal_alpha(loss_cfg) -> float:
    """alpha-loss, l(s) + l(1 - s) with l(p) = alpha/(alpha - 1) (1 - p^((alpha - 1)/alpha)), is
    least at s = 1/2 for every alpha (the optimal D of Welfert et al., Theorem 1, at p_r = p_g):
    V* = 2 alpha/(alpha - 1) (1 - 2^((1 - alpha)/alpha)); log 4 at alpha = 1, 1 at alpha = inf,
    4 - 2 sqrt(2) at 2, 2 at 1/2."""
    alpha = loss_cfg.alpha_d
    if alpha == 1:
        return math.log(4.0)
    if math.isinf(alpha):
        return 1.0
    k = (alpha - 1) / alpha
    return -2 * math.expm1(-k * math.log(2.0)) / k


def _ideal_hinge(loss_cfg) -> float:
    """Hinge, relu(1 - D) + relu(1 + D), is 2 for every D in [-1, 1]: V* = 2."""
    return 2.0


def _ideal_l1(loss_cfg) -> float:
    """L1, |D - 1| + |D|, is 1 for every D in [0, 1]: V* = 1."""
    return 1.0


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("gan", "gan_d_loss", "gan_ns_g_loss", "standard GAN, non-saturating G loss",
             ideal_d_loss=_ideal_cross_entropy, role="baseline"),
        Loss("gan_minimax", "gan_d_loss", "gan_minimax_g_loss",
             "standard GAN, saturating (minimax) G loss", ideal_d_loss=_ideal_cross_entropy),
        Loss("lsgan", "lsgan_d_loss", "lsgan_g_loss",
             "least squares GAN, 0-1 coding (a, b, c) = (0, 1, 1)",
             coding=LSGAN_PRESETS["lsgan"], ideal_d_loss=_ideal_least_squares, role="candidate"),
        Loss("lsgan_chi2", "lsgan_d_loss", "lsgan_g_loss",
             "least squares GAN, (a, b, c) = (-1, 1, 0): b - c = 1, b - a = 2 (Pearson chi^2)",
             coding=LSGAN_PRESETS["lsgan_chi2"], ideal_d_loss=_ideal_least_squares,
             role="candidate"),
        # Not a candidate: the study's LSGAN works on the raw output; this one is bounded.
        Loss("lsgan_sigmoid", "lsgan_sigmoid_d_loss", "lsgan_sigmoid_g_loss",
             "least squares on sigmoid(D) (Lucic et al. 2018's 'LSGAN'), targets 0, 1, 1",
             ideal_d_loss=_ideal_least_squares_sigmoid),
        Loss("alpha", "alpha_d_loss", "alpha_ns_g_loss",
             "(alpha_D, alpha_G)-GAN: alpha-loss for D and for G (non-saturating G); "
             "alpha = 1 is the standard GAN", alphas=(1.0, 1.0), ideal_d_loss=_ideal_alpha),
        Loss("l1", "l1_d_loss", "l1_g_loss", "L1 GAN with an unbounded discriminator",
             ideal_d_loss=_ideal_l1),
        # No ideal loss: the critic's value at p_g = p_d is 0 plus a penalty that depends on D.
        Loss("wgan_gp", "wasserstein_d_loss", "wasserstein_g_loss",
             "Wasserstein GAN with gradient penalty", gradient_penalty=True),
        Loss("hinge", "hinge_d_loss", "wasserstein_g_loss", "hinge loss",
             ideal_d_loss=_ideal_hinge),
    )
}  # fmt: skip


def with_role(role: str) -> list[str]:
    """The losses of a role (``baseline`` or ``candidate``), in registry order."""
    return [name for name, loss in LOSSES.items() if loss.role == role]


@dataclass(frozen=True)
class ComparedLosses:
    """Which losses are compared: every candidate against the baseline, in each block without a
    ``compare`` of its own (and in the report of runs not designed by a study).

    The default takes the roles of the loss registry (``gan`` against every LSGAN loss); a
    study config's top-level ``compare`` key names others.
    """

    baseline: str
    candidates: tuple[str, ...]

    @classmethod
    def from_config(cls, config: dict | None = None) -> ComparedLosses:
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


def resolve_alphas(loss_cfg) -> tuple[float | None, float | None]:
    """(alpha_D, alpha_G) of an alpha loss config: explicit values override the registry's
    defaults; each must be in (0, inf] (YAML writes infinity as ``.inf``). Other losses take no
    alpha; setting one there is an error."""
    given = (loss_cfg.alpha_d, loss_cfg.alpha_g)
    preset = LOSSES[loss_cfg.name].alphas
    if preset is None:
        if any(v is not None for v in given):
            raise ConfigError(
                f"keys 'loss.alpha_d/alpha_g': {given} given for loss '{loss_cfg.name}', which "
                "has no alpha; allowed only for: "
                + ", ".join(name for name, loss in LOSSES.items() if loss.alphas)
            )
        return None, None
    resolved = tuple(p if v is None else float(v) for v, p in zip(given, preset))
    for key, value in zip(("alpha_d", "alpha_g"), resolved):
        if not value > 0:  # also refuses NaN
            raise ConfigError(
                f"key 'loss.{key}': {value!r} is not allowed; allowed: a number in (0, inf] "
                "(.inf in YAML)"
            )
    return resolved


def ideal_d_loss(loss_cfg) -> float | None:
    """The ideal discriminator loss V* of a resolved loss config (None: not known)."""
    ideal = LOSSES[loss_cfg.name].ideal_d_loss
    return None if ideal is None else float(ideal(loss_cfg))


def build_loss(loss_cfg) -> tuple[Callable, Callable, bool]:
    """The (d_loss, g_loss, needs_gradient_penalty) triple of a validated loss config."""
    loss = LOSSES[loss_cfg.name]
    d_loss, g_loss = loss.functions()
    if loss.alphas is not None:
        alpha_d, alpha_g = resolve_alphas(loss_cfg)
        return partial(d_loss, alpha=alpha_d), partial(g_loss, alpha=alpha_g), False
    if loss.coding is None:
        return d_loss, g_loss, loss.gradient_penalty
    a, b, c = resolve_coding(loss_cfg)
    return partial(d_loss, a=a, b=b), partial(g_loss, c=c), loss.gradient_penalty
