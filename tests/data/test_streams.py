"""2D mixtures and the batch streams."""

import pytest
import torch

from ganstudy import config
from ganstudy.data.registry import DATASETS
from ganstudy.data.streams import (
    ImageStream,
    MixtureStream,
    make_stream,
    mixture_means,
    mixture_training_set,
)


def test_ring8_has_eight_distinct_means_on_the_unit_circle():
    means = mixture_means("ring8")
    assert means.shape == (8, 2)
    assert len(torch.unique(means.round(decimals=5), dim=0)) == 8
    torch.testing.assert_close(means.norm(dim=1), torch.ones(8))
    # consecutive modes are 45 degrees apart
    gaps = (means - means.roll(-1, 0)).norm(dim=1)
    torch.testing.assert_close(
        gaps, torch.full((8,), 2 * torch.sin(torch.tensor(torch.pi / 8)).item())
    )


def test_grid25_means():
    means = mixture_means("grid25")
    assert means.shape == (25, 2)
    assert len(torch.unique(means, dim=0)) == 25
    assert set(means[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_mixture_samples_sit_on_their_modes(name):
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    stream = MixtureStream(name, gens, 4000, "cpu")
    batch = stream.batch(0)
    assert batch.shape == (2, 4000, 2)
    means = mixture_means(name)
    dist = torch.cdist(batch[0], means).min(dim=1).values
    assert (dist < 4 * DATASETS[name].mixture.sigma).float().mean() > 0.99
    nearest = torch.cdist(batch[0], means).argmin(dim=1)
    counts = torch.bincount(nearest, minlength=len(means)).float()
    assert counts.min() > 0.5 * counts.mean()  # every mode drawn, roughly uniformly
    assert not torch.equal(batch[0], batch[1])  # members draw independently


@pytest.mark.parametrize("saved_at", [0, 1, 63, 64, 70, 128])
def test_mixture_stream_resumes_from_state(saved_at):
    # Saved inside a chunk, at its first step, and just after a chunk was used up: the resumed
    # stream re-draws the chunk it is in and reads on, across the next chunk boundary too.
    stream = MixtureStream("ring8", [torch.Generator().manual_seed(3)], 16, "cpu")
    for step in range(saved_at):
        stream.batch(step)
    state = stream.member_state(0)
    expected = [stream.batch(step) for step in range(saved_at, saved_at + 80)]
    other = MixtureStream("ring8", [torch.Generator().manual_seed(99)], 16, "cpu")
    other.load_members([state])
    assert all(torch.equal(other.batch(saved_at + i), e) for i, e in enumerate(expected))


def test_mixture_member_is_the_solo_stream():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3, 4, 5)]
    five = MixtureStream("grid25", gens, 16, "cpu", batches_per_step=2)
    solo = MixtureStream("grid25", [torch.Generator().manual_seed(4)], 16, "cpu", 2)
    for index in range(300):
        assert torch.equal(five.batch(index)[3], solo.batch(index)[0])


def test_image_stream_is_a_function_of_the_batch_index():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    stream = ImageStream(images, [5, 6], batch_size=3, device="cpu")
    assert stream.batches_per_epoch == 3
    first = torch.cat([stream.batch(i) for i in range(3)], dim=1)
    # one epoch visits distinct images (the last incomplete batch is dropped)
    values = ((first[0, :, 0, 0, 0] + 1) * 127.5).round()
    assert len(set(values.tolist())) == 9
    again = ImageStream(images, [5, 6], batch_size=3, device="cpu")
    assert torch.equal(again.batch(4), stream.batch(4))
    assert not torch.equal(stream.batch(3), stream.batch(0))  # a new order every epoch
    assert first.min() >= -1 and first.max() <= 1


def test_a_fixed_mixture_training_set_is_shared_by_seeds_and_shuffled_per_member():
    points = mixture_training_set("ring8", 1000, sample_seed=1)
    assert points.shape == (1000, 2)
    assert torch.equal(points, mixture_training_set("ring8", 1000, sample_seed=1))
    assert not torch.equal(points, mixture_training_set("ring8", 1000, sample_seed=2))
    dist = torch.cdist(points, mixture_means("ring8")).min(dim=1).values
    assert (dist < 5 * DATASETS["ring8"].mixture.sigma).all()

    cfg = config.from_dict(
        {"dataset": {"name": "ring8", "n_train": 1000, "sample_seed": 1},
         "train": {"epochs": 3, "batch_size": 100}}
    )  # fmt: skip
    stream = make_stream(cfg, [], [11, 12], "cpu")
    assert stream.batches_per_epoch == 10
    epoch = torch.cat([stream.batch(i) for i in range(10)], dim=1)
    assert epoch.shape == (2, 1000, 2)
    # every member sees every training point once per epoch, in its own order
    for k in range(2):
        assert torch.equal(epoch[k][epoch[k][:, 0].argsort()], points[points[:, 0].argsort()])
    assert not torch.equal(epoch[0], epoch[1])
    solo = make_stream(cfg, [], [12], "cpu")
    assert torch.equal(solo.batch(13)[0], stream.batch(13)[1])


def test_registry_lists_the_study_datasets():
    assert {
        "fashion_mnist",
        "mnist",
        "stacked_mnist",
        "cat64",
        "cat128",
        "cat_faces64",
        "ring8",
        "grid25",
    } <= set(DATASETS)
    assert DATASETS["cat_faces64"].substitute_for == "cat64"
    assert "not the CAT dataset" in DATASETS["cat_faces64"].description
