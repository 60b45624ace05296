"""Progress of a training job: a tqdm bar on a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
import time


class Progress:
    """tqdm on a terminal, plain lines at most every ``every_s`` seconds otherwise."""

    def __init__(self, total: int, initial: int, label: str, every_s: float = 15.0):
        self.total, self.label, self.every_s = total, label, every_s
        self.bar = None
        self._last = 0.0
        self._t0, self._s0 = time.monotonic(), initial
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, desc=label, unit="step", dynamic_ncols=True
            )

    def update(self, step: int, n: int, info: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in info.items()}, refresh=False)
            return
        now = time.monotonic()
        if now - self._last < self.every_s and step < self.total:
            return
        self._last = now
        rate = (step - self._s0) / max(now - self._t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        values = " ".join(f"{k} {v:.4g}" for k, v in info.items())
        print(
            f"[{self.label}] step {step}/{self.total} ({100 * step / self.total:.0f}%) {values} "
            f"{rate:.1f} steps/s ETA {eta / 60:.1f} min",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
