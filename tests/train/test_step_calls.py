"""A training step makes the same ATen calls for any number of members K and never makes the host
wait for the device between log rows (counted on the CPU; on a GPU each call that is not a view
is a kernel launch).

Measured (mlp2d, ring8, batch 4; ATen calls per step / of them kernels, the chunk's drawing
amortised): K = 1: 797 / 422, K = 16: 859 / 484, K = 64: 866 / 488, K = 256: 893 / 506. Before
the numbers were drawn ahead: 548 at K = 1 and 1,426 at K = 64 (batch 16). What still differs:
an ensemble's batch norm copies its activations to and from the per-(member, channel) layout
(60 kernels a step for mlp2d) where a solo run's are already in it, and drawing a chunk costs
each member 6 kernels per 64 steps.
"""

import ast
import inspect
import textwrap

import pytest
from helpers import write_fake_prepared

from ganstudy import config
from ganstudy.data import draws, streams
from ganstudy.train import calls, step, updates
from ganstudy.train.trainer import Trainer

TOLERANCE = 0.10


def run_config(arch, dataset, data_root, batch_size, loss="lsgan", **train):
    return config.from_dict(
        {
            "dataset": {"name": dataset, "data_root": str(data_root)},
            "arch": {"name": arch, "z_dim": 16},
            "loss": {"name": loss},
            "train": {"steps": 1000, "batch_size": batch_size, **train},
            "tracking": {"enabled": False},
        }
    )


def counted(cfg, members, tmp_path) -> calls.PerStep:
    dirs = [tmp_path / f"K{members}-{k}" for k in range(members)]
    return calls.per_step(Trainer(cfg, list(range(members)), dirs, progress=False))


def assert_flat(found: dict[int, calls.PerStep]):
    """Calls per step (drawing amortised over its chunk) within 10% for every K >= 2, and a
    solo run's not above an ensemble's; no host synchronisation anywhere."""
    ensembles = {K: c for K, c in found.items() if K > 1}
    for measure in ("total", "kernels"):
        values = {K: getattr(c, measure) for K, c in ensembles.items()}
        low = min(values.values())
        assert all(v / low - 1 <= TOLERANCE for v in values.values()), (measure, values)
        if 1 in found:
            assert getattr(found[1], measure) <= low, (measure, getattr(found[1], measure), low)
    if 1 in found:
        # The solo run's batch norm needs no layout copies; in all ATen calls it stays within 10%.
        assert min(c.total for c in ensembles.values()) / found[1].total - 1 <= TOLERANCE
    assert all(not c.syncs for c in found.values()), {K: c.syncs for K, c in found.items()}


def test_mlp2d_step_calls_do_not_grow_with_the_members(tmp_path):
    cfg = run_config("mlp2d", "ring8", tmp_path, batch_size=4)
    assert_flat({K: counted(cfg, K, tmp_path) for K in (1, 16, 64, 256)})


@pytest.mark.parametrize(
    "loss, train",
    [("wgan_gp", {"d_steps": 2}), ("gan", {"d_lr_schedule": "gap_aware"})],
    ids=["penalty_two_d_steps", "gap_aware"],
)
def test_step_calls_with_each_factor_do_not_grow_with_the_members(tmp_path, loss, train):
    cfg = run_config("mlp2d", "grid25", tmp_path, batch_size=4, loss=loss, **train)
    assert_flat({K: counted(cfg, K, tmp_path) for K in (1, 2, 32)})


@pytest.mark.slow(seconds=21)
def test_dcgan28_step_calls_do_not_grow_with_the_members(tmp_path):
    write_fake_prepared(tmp_path, "fashion_mnist", 256, (1, 28, 28))
    cfg = run_config("dcgan28", "fashion_mnist", tmp_path, batch_size=2)
    assert_flat({K: counted(cfg, K, tmp_path) for K in (1, 2, 16)})


def test_a_host_read_in_the_step_is_caught(tmp_path, monkeypatch):
    # The counter must see what it is there to see: a step that reads a loss on the host.
    factor = updates.GapAwareSchedule.factor

    def reading(self, loss_d):
        if float(loss_d.max()) > 1e9:  # a Python branch on a tensor's value
            pass
        return factor(self, loss_d)

    monkeypatch.setattr(updates.GapAwareSchedule, "factor", reading)
    cfg = run_config("mlp2d", "ring8", tmp_path, batch_size=4, d_lr_schedule="gap_aware")
    found = counted(cfg, 2, tmp_path)
    # steps 1 and 2, and the chunk-drawing step: one read each
    assert [name for name, _ in found.syncs] == ["aten._local_scalar_dense"] * 3


# The step's code: no host reads a dispatch counter cannot see on the CPU (``.cpu()`` of a CPU
# tensor is no call at all).
STEP_CODE = [
    Trainer.train_step,
    step.apply_update,
    step.norms,
    step.penalty,
    updates.GapAwareSchedule.factor,
    draws.ChunkedDraws.at,
    streams.MixtureStream.batch,
    streams.ImageStream.batch,
]
HOST_READS = {"item", "tolist", "cpu", "numpy", "nonzero"}


@pytest.mark.parametrize("function", STEP_CODE, ids=lambda f: f.__qualname__)
def test_the_step_code_reads_nothing_on_the_host(function):
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    reads = [
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in HOST_READS
    ]
    assert not reads, reads
