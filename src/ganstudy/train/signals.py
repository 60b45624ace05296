"""Stopping a training job cleanly when a cluster (or a user) asks it to.

SLURM sends SIGTERM at a time limit, on preemption and on ``scancel``; some clusters are set to
send SIGUSR1 a while before the limit; a user presses Ctrl-C (SIGINT). Inside
:class:`StopRequest` the first of these only sets a flag: the training loop finishes the step it
is in, writes a checkpoint of every member at that step, records ``"status": "interrupted"`` and
the process exits with :data:`EXIT_INTERRUPTED`. A second signal takes its default action at
once (a second Ctrl-C stops without the checkpoint).
"""

from __future__ import annotations

import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# EX_TEMPFAIL of sysexits.h: "try again later". Snakemake counts it as a failed job and, with
# retries (the SLURM profile's `retries`), submits it again; the rerun resumes from the checkpoint.
EXIT_INTERRUPTED = 75


class StopRequest:
    """A context in which the stop signals set :attr:`signal` instead of ending the process.

    Handlers can only be installed from the main thread; elsewhere the context does nothing and
    the signals keep their default actions.
    """

    def __init__(self, label: str = "ganstudy"):
        self.label = label
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None:
            self._restore()
            signal.raise_signal(signum)
            return
        self.signal = signum
        print(
            f"[{self.label}] {signal.Signals(signum).name} received: finishing this step, then "
            "writing a checkpoint (send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
