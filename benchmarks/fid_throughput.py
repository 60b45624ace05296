"""Inception feature-extraction throughput: the in-memory FID path against pytorch-fid's own.

Both paths run the same InceptionV3 instance on the same images, side by side in one process:

- baseline: pytorch-fid's ``calculate_activation_statistics`` over PNG files (ImagePathDataset,
  PIL decoding, DataLoader), as ``python -m pytorch_fid`` does;
- ganstudy: ``fid.statistics(fid.activations(tensor, ...))`` on a float tensor in [-1, 1].

Each path is timed ``--repeats`` times in alternation; the table shows the median images/s and
the ratio ganstudy / baseline, and checks that both give the same statistics.

    python benchmarks/fid_throughput.py --weights PATH [--n 200] [--dims 2048] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_activation_statistics

from ganstudy.metrics import fid, fid_protocol


def make_images(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random uint8 images (blurred noise), shaped like a GAN's samples."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, channels, size // 4, size // 4, generator=gen)
    smooth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear")
    return (smooth * 255).round().to(torch.uint8)


def write_pngs(images: torch.Tensor, folder: Path) -> list[Path]:
    paths = []
    for i, image in enumerate(images):
        array = image.permute(1, 2, 0).numpy()
        path = folder / f"{i:05d}.png"
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)
        paths.append(path)
    return paths


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights", help=f"FID Inception weights (default ${fid_protocol.WEIGHTS_ENV})"
    )
    parser.add_argument("--n", type=int, default=200, help="images per timing (default 200)")
    parser.add_argument("--dims", type=int, default=2048, choices=list(fid_protocol.DIMS))
    parser.add_argument("--size", type=int, default=28, help="image side (default 28)")
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3])
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--num-workers", type=int, default=1, help="pytorch-fid's DataLoader")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()

    device = torch.device(args.device)
    weights = fid.resolve_weights(args.weights)
    model = fid.load_inception(args.dims, weights, device)
    images = make_images(args.n, args.channels, args.size, seed=0)
    floats = images.float() / 127.5 - 1

    with tempfile.TemporaryDirectory() as folder:
        files = write_pngs(images, Path(folder))

        def baseline():
            return calculate_activation_statistics(
                files, model, args.batch_size, args.dims, device, args.num_workers
            )

        def ours():
            s = fid.statistics(fid.activations(floats, model, args.batch_size, device))
            return s.mu, s.sigma

        timed(lambda: fid.activations(floats[: args.batch_size], model, args.batch_size, device))
        times: dict[str, list[float]] = {"pytorch-fid (PNG files)": [], "ganstudy (tensor)": []}
        results = {}
        for _ in range(args.repeats):
            for name, fn in zip(times, (baseline, ours)):
                seconds, results[name] = timed(fn)
                times[name].append(seconds)

    (mu_a, sigma_a), (mu_b, sigma_b) = results.values()
    rate = {name: args.n / statistics.median(ts) for name, ts in times.items()}
    base = rate["pytorch-fid (PNG files)"]
    print(
        f"\nFID feature extraction, {args.n} images {args.channels}x{args.size}x{args.size}, "
        f"{args.dims}-d, batch {args.batch_size}, device {device}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'path':<26}{'images/s':>10}{'ratio':>8}   runs (s)")
    for name, ts in times.items():
        runs = ", ".join(f"{t:.1f}" for t in ts)
        print(f"{name:<26}{rate[name]:>10.2f}{rate[name] / base:>8.2f}   {runs}")
    print(
        f"same statistics: max |mu diff| = {np.abs(mu_a - mu_b).max():.2e}, "
        f"max |sigma diff| = {np.abs(sigma_a - sigma_b).max():.2e}"
    )


if __name__ == "__main__":
    main()
