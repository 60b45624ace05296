"""GPU memory of a study's jobs (ganstudy.study.memory): the estimate of a training job, GPU
memory read from nvidia-smi or simulated, ``gpus.jobs_per_gpu: auto``, ``seeds_per_job: all``
and the refusal of a job that cannot fit. No GPU is used: GPUs and their memory are simulated
($GANSTUDY_GPU_MEMORY_MIB, a fake nvidia-smi)."""

from __future__ import annotations

import math
import subprocess

import pytest

from ganstudy.cli import main as cli_main
from ganstudy.errors import ConfigError
from ganstudy.study import cost as study_cost
from ganstudy.study import memory
from ganstudy.study import schema as study_schema
from ganstudy.study.workflow import Study

SCHEMA = study_schema.default_schema_path()
MIB, GIB = memory.MIB, memory.GIB


def ring_cfg(**train) -> dict:
    """mlp2d on ring8 without batch norm: a network whose sizes are counted by hand below."""
    return {
        "dataset": {"name": "ring8"},
        "arch": {"name": "mlp2d", "bn": {"g": False, "d": False}},
        "train": {"steps": 10, **train},
    }


def toy_study(block: dict | None = None, **top) -> Study:
    block = block or {}
    base = {"datasets": ["ring8"], "archs": ["mlp2d"], "losses": ["gan"], "train": {"steps": 10}}
    cfg = {"experiments": {"toy": {**base, **block}}, **top}
    return Study.from_config(cfg, SCHEMA)


def fmnist_block(**changes) -> dict:
    return {
        "datasets": ["fashion_mnist"],
        "archs": ["dcgan28"],
        "losses": ["gan"],
        "seeds": 8,
        "seeds_per_job": 8,
        "train": {"steps": 10},
        **changes,
    }


def simulated(mib: float) -> dict[str, str]:
    return {memory.GPU_MEMORY_ENV: str(mib)}


# ---------------------------------------------------------------------------------------------
# the estimate of one training job


def test_a_training_job_is_counted_from_its_networks_on_the_meta_device():
    k, b = 3, 32
    job = memory.training_memory(ring_cfg(batch_size=b), k)
    # mlp2d without BN: G = 4 x (Linear 400, ReLU) + Linear 2 from z of 64; D = 3 x (Linear 200,
    # ReLU) + Linear 1 from 2. Parameters per member: G 64*400+400 + 3*(400*400+400) + 400*2+2,
    # D 2*200+200 + 2*(200*200+200) + 200+1.
    params = (64 * 400 + 400 + 3 * (400 * 400 + 400) + 400 * 2 + 2) + (
        2 * 200 + 200 + 2 * (200 * 200 + 200) + 200 + 1
    )
    assert job.weights == k * params * 4 * (2 + memory.OPTIMIZER_TENSORS)
    # Forward outputs of every layer, float32, per sample: G 8 x 400 + 2, D 6 x 200 + 1; D runs
    # on the real and the fake batch; x BACKWARD_FACTOR.
    g_out, d_out = 8 * 400 + 2, 6 * 200 + 1
    assert job.activations == memory.BACKWARD_FACTOR * 4 * k * b * (g_out + 2 * d_out)
    # Noise for d_steps + 1 updates and the mixture's draws (component and 2 coordinates, 8 B)
    # for 64 steps ahead.
    chunk = memory.DRAW_CHUNK_STEPS
    assert job.draws == k * chunk * 2 * b * 64 * 4 + k * chunk * 1 * b * 3 * 8
    assert job.data == 0 and job.inception == 0
    assert job.context == memory.CUDA_CONTEXT_BYTES
    assert job.total == sum(
        (job.weights, job.activations, job.draws, job.data, job.inception, job.context)
    )


def test_the_estimate_follows_what_a_run_holds():
    base = memory.training_memory(ring_cfg(), 2)
    # a gradient penalty: D on the interpolates and its gradient, and the mixing weights
    gp_cfg = {**ring_cfg(), "loss": {"name": "wgan_gp"}}
    gp = memory.training_memory(gp_cfg, 2)
    assert gp.weights == base.weights
    assert gp.activations > base.activations
    assert gp.draws == base.draws + 2 * memory.DRAW_CHUNK_STEPS * 1 * 64 * 4
    # more D steps, more noise drawn ahead; a fixed 2-D training set is held as float32
    assert memory.training_memory(ring_cfg(d_steps=3), 2).draws > base.draws
    fixed = {**ring_cfg(), "dataset": {"name": "ring8", "n_train": 1000}}
    assert memory.training_memory(fixed, 2).data == 1000 * 2 * 4
    # an image dataset held as uint8; training-time FID loads Inception
    image = {
        "dataset": {"name": "fashion_mnist"},
        "arch": {"name": "dcgan28"},
        "train": {"steps": 10},
    }
    job = memory.training_memory(image, 1, n_train=5000)
    assert job.data == 5000 * 1 * 28 * 28 and job.inception == 0
    image["train"]["fid_every"] = 5
    assert memory.training_memory(image, 1, n_train=5000).inception == memory.INCEPTION_BYTES
    # every member-sized part grows with the members
    four = memory.training_memory(ring_cfg(), 4)
    assert four.weights == 2 * base.weights and four.activations == 2 * base.activations
    assert four.total < 2 * base.total  # the context is paid once


# ---------------------------------------------------------------------------------------------
# GPU memory: simulated, or read from nvidia-smi


def test_gpu_memory_from_the_environment_or_nvidia_smi(monkeypatch):
    assert memory.gpu_free_bytes(["0"], simulated(81920)) == 80 * GIB
    assert memory.gpu_free_bytes([], simulated(81920)) is None  # no GPU: nothing to know
    with pytest.raises(ConfigError, match=r"\$GANSTUDY_GPU_MEMORY_MIB: 'lots' is not allowed"):
        memory.gpu_free_bytes(["0"], simulated("lots"))

    calls = []

    def fake_smi(command, **kwargs):
        calls.append(command)
        out = "0, GPU-aaa, 70000, 81559\n1, GPU-bbb, 30000, 81559\n"
        return subprocess.CompletedProcess(command, 0, stdout=out, stderr="")

    monkeypatch.setattr(memory.subprocess, "run", fake_smi)
    assert memory.gpu_free_bytes(["0"], {}) == 70000 * MIB
    assert memory.gpu_free_bytes(["GPU-bbb"], {}) == 30000 * MIB
    assert memory.gpu_free_bytes(["0", "1"], {}) == 30000 * MIB  # the smallest
    assert memory.gpu_free_bytes(["7"], {}) == 30000 * MIB  # unmatched ids: every GPU listed
    assert calls[0][:2] == ["nvidia-smi", "--query-gpu=index,uuid,memory.free,memory.total"]

    def no_smi(command, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(memory.subprocess, "run", no_smi)
    assert memory.gpu_free_bytes(["0"], {}) is None


# ---------------------------------------------------------------------------------------------
# jobs_per_gpu: auto


def test_auto_packs_jobs_by_memory_bounded_by_the_cores():
    s = toy_study(gpus={"jobs_per_gpu": "auto"}, seeds_per_job=2)
    largest = memory.StudyMemory(s).largest_job().total
    # Small jobs on a simulated 80 GiB GPU: the memory would hold dozens, the 16 cores bound it.
    by_memory = math.floor(80 * GIB * memory.HEADROOM / largest)
    assert by_memory > 16
    big = memory.plan(s, ["0"], cores=16, environ=simulated(80 * 1024))
    assert big.jobs_per_gpu == 16 and big.free_bytes == 80 * GIB
    assert "auto" in big.note and big.largest.total == largest
    # Two GPUs share the cores.
    assert memory.plan(s, ["0", "1"], cores=16, environ=simulated(80 * 1024)).jobs_per_gpu == 8
    # A small GPU holds fewer: the memory bounds it.
    small_mib = 3 * largest / MIB
    small = memory.plan(s, ["0"], cores=16, environ=simulated(small_mib))
    assert small.jobs_per_gpu == math.floor(3 * memory.HEADROOM) == 2
    # One that holds less than one job still runs one (and every job was checked to fit).
    assert (
        memory.plan(s, ["0"], cores=16, environ=simulated(1.05 * largest / MIB)).jobs_per_gpu == 1
    )
    # No GPU: auto means 1.
    assert memory.plan(s, [], cores=16, environ=simulated(80 * 1024)).jobs_per_gpu == 1


def test_auto_is_one_where_the_gpu_memory_is_unknown(monkeypatch):
    monkeypatch.setattr(memory, "_nvidia_smi_free", lambda gpus: None)
    s = toy_study(gpus={"jobs_per_gpu": "auto"})
    gpu = memory.plan(s, ["0"], cores=16, environ={})
    assert gpu.jobs_per_gpu == 1 and gpu.largest is None and "unknown" in gpu.note
    # A fixed count is kept, with a warning where its jobs may not fit together.
    s = toy_study(gpus={"jobs_per_gpu": 6})
    assert memory.plan(s, ["0"], cores=16, environ={}).jobs_per_gpu == 6
    largest = memory.StudyMemory(s).largest_job().total
    crowded = memory.plan(s, ["0"], cores=16, environ=simulated(3 * largest / MIB))
    assert crowded.jobs_per_gpu == 6 and "`auto` would run 2" in crowded.warning
    roomy = memory.plan(s, ["0"], cores=16, environ=simulated(80 * 1024))
    assert roomy.jobs_per_gpu == 6 and roomy.warning is None


def test_the_jobs_see_the_resolved_count():
    s = toy_study(gpus={"jobs_per_gpu": "auto"})
    assert s.job_environment(environ={})["GANSTUDY_JOBS_PER_GPU"] == "1"
    assert s.job_environment(environ={}, jobs_per_gpu=5)["GANSTUDY_JOBS_PER_GPU"] == "5"


# ---------------------------------------------------------------------------------------------
# seeds_per_job: all, and a K that cannot fit


def test_seeds_per_job_all_puts_every_seed_of_a_variant_in_one_job():
    s = toy_study({"seeds": 7, "seeds_per_job": "all", "losses": ["gan", "lsgan"]})
    assert [job.seeds for job in s.jobs] == [tuple(range(7))] * 2
    assert [c.jobs for c in study_cost.estimate(s)] == [1, 1]
    # the top-level value, and an explicit list of seeds
    s = toy_study({"seeds": [3, 9, 4]}, seeds_per_job="all")
    assert [job.seeds for job in s.jobs] == [(3, 4, 9)]
    assert s.jobs[0].name.endswith("__seeds_3_3")
    # a block's own count wins over the top-level all
    s = toy_study({"seeds": 4, "seeds_per_job": 2}, seeds_per_job="all")
    assert [job.seeds for job in s.jobs] == [(0, 1), (2, 3)]
    with pytest.raises(
        ConfigError, match=r"key 'seeds_per_job': 'every' is not allowed; allowed: "
    ):
        toy_study(seeds_per_job="every")


def test_a_job_that_cannot_fit_is_refused_naming_the_largest_k_that_fits():
    s = toy_study(fmnist_block())
    estimates = memory.StudyMemory(s)
    variant = s.variants[0]
    eight = estimates.variant(variant).total
    assert estimates.variant(variant).members == 8
    free = 3 * GIB
    assert eight > free * memory.HEADROOM  # the simulated GPU is too small for 8 members
    with pytest.raises(ConfigError) as caught:
        memory.plan(s, ["0"], cores=16, environ=simulated(3072))
    message = str(caught.value)
    fits = next(k for k in range(8, 0, -1) if estimates.variant(variant, k).total <= 0.9 * free)
    assert 1 < fits < 8
    assert estimates.variant(variant, fits + 1).total > 0.9 * free
    assert message.startswith("key 'experiments.toy.seeds_per_job': 8 seeds of ")
    assert f"about {eight / GIB:,.2f} GiB" in message
    assert "the GPU has 3.00 GiB free" in message
    assert (
        f"allowed: at most {fits} seeds per job for fashion_mnist/dcgan28/gan/bn-g1-d1" in message
    )
    # With a count that fits, the same study passes.
    memory.plan(toy_study(fmnist_block(seeds_per_job=fits)), ["0"], 16, simulated(3072))
    # Inherited from the top level, the message says so; on a tiny GPU not even one seed fits.
    inherited = toy_study(fmnist_block(seeds_per_job=None), seeds_per_job="all")
    with pytest.raises(ConfigError, match=r"\(the top-level seeds_per_job applies\): 8 seeds"):
        memory.check_fits(inherited, 3 * GIB)
    with pytest.raises(ConfigError, match="not even one seed fits"):
        memory.check_fits(s, 600 * MIB)
    # Without a known GPU memory nothing is refused.
    assert memory.plan(s, [], cores=16, environ=simulated(3072)).jobs_per_gpu == 1


def test_study_cost_checks_the_study_against_a_simulated_gpu(tmp_path, monkeypatch, capsys):
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"experiments": {"toy": fmnist_block()}}))
    monkeypatch.delenv("GANSTUDY_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv(memory.GPU_MEMORY_ENV, "3072")
    assert cli_main(["study", "cost", str(path)]) == 2
    err = capsys.readouterr().err
    assert "key 'experiments.toy.seeds_per_job': 8 seeds" in err and "at most" in err
    monkeypatch.setenv(memory.GPU_MEMORY_ENV, str(80 * 1024))
    assert cli_main(["study", "cost", str(path)]) == 0
    out = capsys.readouterr().out
    assert "GPU memory: the largest job is a training job of 8 seed(s)" in out
    assert "Every job fits on a GPU with 80.00 GiB free" in out
    monkeypatch.delenv(memory.GPU_MEMORY_ENV)
    assert cli_main(["study", "cost", str(path)]) == 0
    assert "GPU memory: not checked (no GPU" in capsys.readouterr().out


def test_the_estimate_counts_the_chunk_the_trainer_draws_ahead():
    # memory imports no torch, so it keeps its own copy of the constant: the two must agree.
    from ganstudy.data import draws

    assert memory.DRAW_CHUNK_STEPS == draws.CHUNK_STEPS
