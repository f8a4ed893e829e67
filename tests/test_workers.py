"""featmap.run.workers: signals held back over a step that must not be cut in two."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import pytest

from featmap.run.workers import signals_deferred


class Stopped(Exception):
    pass


def _stop(number: int, frame: FrameType | None) -> None:
    raise Stopped(number)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sent_while_other_threads_run_waits_for_the_block(sig: int) -> None:
    """A process-directed signal during the block is delivered after it, even though another thread of the
    process (which does not hold it back) receives it: every statement of the block runs, then the handler."""
    previous = signal.signal(sig, _stop)
    steps: list[str] = []
    try:
        with pytest.raises(Stopped):
            with signals_deferred():
                sender = threading.Thread(target=os.kill, args=(os.getpid(), sig))
                sender.start()
                sender.join()
                steps.append("sent")
                sum(range(100_000))  # bytecode enough for a pending Python handler to run
                steps.append("block done")
            steps.append("after")  # never reached: the held signal is raised on leaving the block
    finally:
        signal.signal(sig, previous)
    assert steps == ["sent", "block done"]
    assert signal.getsignal(sig) is previous


def test_nothing_held_nothing_raised_and_handlers_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with signals_deferred():
        pass
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_it_is_a_plain_block() -> None:
    """Handlers belong to the main thread: a block in another thread leaves them alone."""
    handler = signal.getsignal(signal.SIGTERM)
    seen: list[bool] = []

    def run() -> None:
        with signals_deferred():
            seen.append(signal.getsignal(signal.SIGTERM) is handler)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen == [True]
