"""The local pool: this process plus up to ``jobs - 1`` helper processes, started only when they pay off.

This process starts on the first image at once (with OpenCV's own threads, as ``-j 1`` does), and from that
image's time judges the rest: helpers are started only when the remaining work outlasts their start-up, and
are given images only once they report ready. Until then, and between handing images out, this process
works itself. Helpers are not forked from this process: a child forked after OpenCV has started its thread
pool hangs in its first OpenCV call (measured here: such helpers never became ready), and this process has
already run an image with OpenCV's threads by then. They are forked by a fork server with featmap's modules
imported (`featmap.run.workers.start_server`), started when the run begins, so a helper costs a fork once
the server is up, not ~0.3 s of interpreter start-up and imports each. A 2-image batch never starts a helper.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import ExitStack
from typing import Any

from featmap.run.backends.base import Finish, HandOut, InProcess, Starting, Task, Work, _as_is, task_name
from featmap.run.workers import Helpers, one_opencv_thread, start_server

__all__ = ["HELPER_START_SECONDS", "LocalPool"]

#: A helper's start-up when its server is not ready yet (spawn + imports) measured on the 2-core machine:
#: 0.25-0.35 s; a fork from a ready server costs a few ms.
HELPER_START_SECONDS = 0.3
#: Images queued per ready helper: one running, one waiting, so it never idles while this process works.
_QUEUED_PER_HELPER = 2


def _ready() -> int:
    """A helper's first task: the imports every image needs, so its first image does not pay them."""
    import os

    import featmap.run.work  # noqa: F401  (the import is the point)

    return os.getpid()


class LocalPool:
    """This process and up to ``jobs - 1`` spawned helpers (see the module's docstring)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.name = f"local pool of {jobs}"
        self.notes: list[str] = []  # for the report: helpers that could not start, or died

    def run(
        self, tasks: Sequence[Task], work: Work, finish: Finish, starting: Starting, hand_out: HandOut = _as_is
    ) -> None:
        """Process the tasks; helpers are stopped at once on an exception or interrupt."""
        alone = InProcess()
        if self.jobs <= 1 or len(tasks) <= 1:
            alone.run(tasks, work, finish, starting, hand_out)
            return
        if len(tasks) > 2:
            start_server()  # its imports run while this process does the first image
        queue = deque(tasks)
        task = queue.popleft()
        starting(task_name(task))
        began = time.perf_counter()
        finish(*work(hand_out(task)))
        per_image = time.perf_counter() - began
        if len(queue) < 2 or len(queue) * per_image / 2 <= HELPER_START_SECONDS:  # one image left: a helper cannot help
            alone.run(list(queue), work, finish, starting, hand_out)  # done sooner alone than with a helper
            return
        try:
            helpers = Helpers(min(self.jobs, len(queue) + 1) - 1)
        except OSError as exc:  # no semaphores, no process slots...: this process does it all
            self.notes.append(f"helper processes could not start ({exc}); every image ran in this process")
            alone.run(list(queue), work, finish, starting, hand_out)
            return
        try:
            used = self._share(helpers, queue, work, finish, starting, hand_out)
        except BaseException:
            helpers.stop()
            raise
        helpers.close() if used and not queue else helpers.stop()  # unused helpers may still be importing
        alone.run(list(queue), work, finish, starting, hand_out)  # what is left if the helpers could not go on

    def _share(
        self, helpers: Helpers, queue: deque[Task], work: Work, finish: Finish, starting: Starting, hand_out: HandOut
    ) -> bool:
        """Share the queue with the helpers until it is empty, or until they cannot go on (the rest then
        stays in ``queue`` for this process)."""
        from concurrent.futures import CancelledError
        from concurrent.futures.process import BrokenProcessPool

        died = "its helper process died (out of memory?); retry with fewer --jobs"
        try:
            ready = [helpers.submit(_ready) for _ in range(helpers.count)]
        except (OSError, BrokenProcessPool) as exc:
            self.notes.append(f"helper processes could not start ({exc}); every image ran in this process")
            return False
        running: dict[Future[Any], Task] = {}
        used = False
        with ExitStack() as single_thread:
            while queue or running:
                if not used and all(f.done() and f.exception() is not None for f in ready):
                    reason = ready[0].exception()
                    self.notes.append(f"helper processes could not start ({reason}); the rest ran in this process")
                    return False
                capacity = _QUEUED_PER_HELPER * sum(1 for f in ready if f.done() and f.exception() is None)
                if capacity and not used:
                    used = True
                    single_thread.enter_context(one_opencv_thread())  # two processes now share the cores
                while queue and len(running) < capacity:
                    task = queue.popleft()
                    try:
                        running[helpers.submit(work, hand_out(task))] = task
                    except (OSError, BrokenProcessPool) as exc:  # a helper cannot start: the rest runs here
                        queue.appendleft(task)
                        self.notes.append(f"helper processes could not start ({exc}); the rest ran in this process")
                        return used
                if queue:
                    task = queue.popleft()
                    starting(task_name(task))
                    finish(*work(hand_out(task)))
                    finished = {future for future in running if future.done()}
                else:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    try:
                        outcome = future.result()
                    except CancelledError:  # never started: it runs here
                        queue.appendleft(task)
                        continue
                    except BrokenProcessPool:  # a helper died: its images fail, the rest run here
                        finish(task[0], None, died)
                        for other in list(running):
                            finish(running.pop(other)[0], None, died)
                        self.notes.append("a helper process died; the remaining images ran in this process")
                        return used
                    finish(*outcome)
        return used
