"""Numerical settings: deterministic algorithms and TF32 set explicitly and recorded; compiled
steps follow eager ones to float32 rounding.

Compiled vs eager, the stated tolerance: inductor fuses and reorders float32 arithmetic, so the
first steps' losses agree to within 1e-5 (about 1e-7 at step 1); GAN training then amplifies the
difference roughly tenfold per step, and after a few hundred steps a compiled run and an eager
run are two different runs of the same distribution, as runs on two kinds of hardware are.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers import ring_config

from ganstudy import config, numerics, store
from ganstudy.config import TrainConfig
from ganstudy.errors import ConfigError
from ganstudy.train.trainer import train


@pytest.fixture
def restore_flags():
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:3]
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[3:]


def test_deterministic_mode_and_tf32_are_set_both_ways_and_recorded(restore_flags, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    on = TrainConfig(steps=5, deterministic=True, tf32=True)
    record = numerics.apply(on, torch.device("cuda"))
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark  # autotuning picks kernels by timing: off
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert record == {
        "deterministic": True,
        "tf32": True,
        "cudnn_benchmark": False,
        "cublas_workspace_config": ":4096:8",
        "compile": "none",
    }
    off = TrainConfig(steps=5, deterministic=False, tf32=False)
    record = numerics.apply(off, torch.device("cuda"))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark  # autotuning where determinism is not asked for
    # PyTorch's own default leaves cuDNN's TF32 on; the key turns both off.
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert record["deterministic"] is False and record["tf32"] is False
    assert numerics.apply(off, torch.device("cpu"))["cudnn_benchmark"] is False


def test_fid_features_are_full_fp32_inside_and_the_choice_is_restored(restore_flags):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    with numerics.full_fp32():
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_compile_modes_per_device_and_without_a_cxx_compiler(monkeypatch, capsys):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert numerics.compile_mode("none", cpu) == "none"
    assert numerics.compile_mode("reduce-overhead", cuda) == "reduce-overhead"
    if numerics.cxx_compiler() is not None:
        assert numerics.compile_mode("reduce-overhead", cpu) == "default"  # no CUDA graphs
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    assert numerics.cxx_compiler() is None
    assert numerics.compile_mode("default", cpu) == "none"
    err = capsys.readouterr().err
    assert "train.compile='default' needs a C++ compiler" in err and "g++" in err


def test_an_unknown_compile_mode_is_named_with_the_allowed_ones():
    with pytest.raises(ConfigError, match="key 'train.compile': 'max' is not allowed; allowed: "
                       "none, default, reduce-overhead"):  # fmt: skip
        config.from_dict({"train": {"steps": 5, "compile": "max"}})


@pytest.mark.slow(seconds=30)
def test_compiled_steps_follow_eager_steps_to_float_rounding(tmp_path):
    if numerics.cxx_compiler() is None:
        pytest.skip("no C++ compiler for inductor on the CPU")
    rows = {}
    for mode in ("none", "default"):
        data = ring_config(steps=3, log_every=1).to_dict()
        data["train"]["compile"] = mode
        (metrics,) = train(config.from_dict(data), [0], [tmp_path / mode], progress=False)
        assert metrics["numerics"]["compile"] == mode
        assert json.loads((tmp_path / mode / store.METRICS).read_text())["status"] == "completed"
        with (tmp_path / mode / store.LOG).open() as handle:
            rows[mode] = list(csv.DictReader(handle))
    assert [r["step"] for r in rows["default"]] == ["1", "2", "3"]
    for eager, compiled in zip(rows["none"], rows["default"]):
        for key in ("loss_d", "loss_g", "d_real", "d_fake"):
            assert abs(float(eager[key]) - float(compiled[key])) <= 1e-5, (eager["step"], key)
