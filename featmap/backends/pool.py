"""The local pool: this process plus up to ``jobs - 1`` helper processes, started only when they pay off.

This process starts on the first image at once (with OpenCV's own threads, as ``-j 1`` does), and from that
image's time judges the rest: helpers are started only when the remaining work outlasts their start-up, and
are given images only once they report ready. Until then, and between handing images out, this process
works itself. Helpers are spawned, not forked: a child forked after OpenCV has started its thread pool
hangs in its first OpenCV call (measured here: forked helpers never became ready), and this process has
already run an image with OpenCV's threads by then. A 2-image batch never starts a helper, and a large one
loses only the helpers' ~0.3 s start-up on one core.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import ExitStack
from typing import Any

from ..workers import Helpers, one_opencv_thread
from .base import Finish, InProcess, Starting, Task, Work, task_name

__all__ = ["HELPER_START_SECONDS", "LocalPool"]

#: A helper's start-up (spawn + imports) measured on the 2-core machine: 0.25-0.35 s.
HELPER_START_SECONDS = 0.3
#: Images queued per ready helper: one running, one waiting, so it never idles while this process works.
_QUEUED_PER_HELPER = 2


def _ready() -> int:
    """A helper's first task: the imports every image needs, so its first image does not pay them."""
    import os

    import featmap.batch  # noqa: F401  (the import is the point)

    return os.getpid()


class LocalPool:
    """This process and up to ``jobs - 1`` spawned helpers (see the module's docstring)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.name = f"local pool of {jobs}"

    def run(self, tasks: Sequence[Task], work: Work, finish: Finish, starting: Starting) -> None:
        """Process the tasks; helpers are stopped at once on an exception or interrupt."""
        if self.jobs <= 1 or len(tasks) <= 1:
            InProcess().run(tasks, work, finish, starting)
            return
        queue = deque(tasks)
        task = queue.popleft()
        starting(task_name(task))
        began = time.perf_counter()
        finish(*work(task))
        per_image = time.perf_counter() - began
        if len(queue) < 2 or len(queue) * per_image / 2 <= HELPER_START_SECONDS:  # one image left: a helper cannot help
            InProcess().run(list(queue), work, finish, starting)  # done sooner alone than with a helper
            return
        helpers = Helpers(min(self.jobs, len(queue) + 1) - 1)
        try:
            used = self._share(helpers, queue, work, finish, starting)
        except BaseException:
            helpers.stop()
            raise
        helpers.close() if used else helpers.stop()  # helpers never given work may still be importing

    @staticmethod
    def _share(helpers: Helpers, queue: deque[Task], work: Work, finish: Finish, starting: Starting) -> bool:
        from concurrent.futures.process import BrokenProcessPool

        ready = [helpers.submit(_ready) for _ in range(helpers.count)]
        running: dict[Future[Any], Task] = {}
        used = False
        with ExitStack() as single_thread:
            while queue or running:
                capacity = _QUEUED_PER_HELPER * sum(1 for f in ready if f.done() and f.exception() is None)
                if capacity and not used:
                    used = True
                    single_thread.enter_context(one_opencv_thread())  # two processes now share the cores
                while queue and len(running) < capacity:
                    task = queue.popleft()
                    running[helpers.submit(work, task)] = task
                if queue:
                    task = queue.popleft()
                    starting(task_name(task))
                    finish(*work(task))
                    finished = {future for future in running if future.done()}
                else:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        finish(task[0], None, "a worker process died (out of memory?); retry with fewer --jobs")
                        raise
                    finish(*outcome)
        return used
