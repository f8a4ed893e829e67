"""The local pool: this process plus up to ``jobs - 1`` helper processes, started only when they pay off.

A batch of three images or more starts the helpers' fork server at once (`featmap.run.workers.start_server`;
``featmap apply`` starts it earlier still, before it builds the job) and runs on one OpenCV thread from then on, so
``-j N`` means N cores: the server's imports, then the helpers, share the cores with this process, and OpenCV's
second thread would only spin waiting for one. This process starts on the first image at once, and from that image's
time judges the rest: helpers are used only when the remaining work outlasts their start-up (a batch of
`EARLY_ASK_IMAGES` or more has asked for them already, so that their start overlaps that image; they are stopped if
it says they do not pay), and are given images only once they report ready. Until then, and between handing images
out, this process works itself; helpers are asked for from a thread (`_Starter`), since a helper's start waits until
the server has finished its imports, and this process must not wait with it (it did: ~0.3-0.5 s a batch). Helpers
are not forked from this process: a child forked after OpenCV has started its thread pool hangs in its first OpenCV
call (measured here: such helpers never became ready). They are forked by the server, a fresh interpreter with
featmap's modules imported, so a helper costs a fork once the server is up, not ~0.3 s of interpreter start-up and
imports each. A 2-image batch never starts a helper.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from featmap.run.backends.base import Finish, HandOut, InProcess, Starting, Task, Work, _as_is, task_name
from featmap.run.workers import Helpers, one_opencv_thread, start_server

__all__ = ["EARLY_ASK_IMAGES", "HELPER_START_SECONDS", "LocalPool"]

#: A helper's start-up when its server is not ready yet (spawn + imports) measured on the 2-core machine:
#: 0.25-0.35 s; a fork from a ready server costs a few ms.
HELPER_START_SECONDS = 0.3
#: A batch of this many images or more asks for its helpers at once, while this process does its first image
#: (a 1024² JPEG with four kernels takes ~16 ms, so 16 of them outlast a helper's start even from a cold server):
#: the helper is ready ~40-50 ms sooner than when asked for after that image. A smaller batch asks once the first
#: image has shown whether helpers pay (asking costs a wait for the server's imports before helpers can be stopped).
EARLY_ASK_IMAGES = 16
#: Images queued per ready helper: one running, one waiting, so it never idles while this process works.
_QUEUED_PER_HELPER = 2


def _ready() -> int:
    """A helper's first task: the imports every image needs, so its first image does not pay them."""
    import os

    import featmap.run.work  # noqa: F401  (the import is the point)

    return os.getpid()


class _Starter:
    """Each helper's first task (`_ready`), submitted from a thread: starting a helper waits for the fork server to
    finish its imports (up to ~0.4 s when the batch is quick to begin), and this process works meanwhile."""

    def __init__(self, helpers: Helpers) -> None:
        self.ready: list[Future[Any]] = []
        self.error: BaseException | None = None  # why no (further) helper could be asked for
        self._thread = threading.Thread(target=self._submit, args=(helpers,), name="featmap-helper-start", daemon=True)
        self._thread.start()

    def _submit(self, helpers: Helpers) -> None:
        from concurrent.futures.process import BrokenProcessPool

        try:
            for _ in range(helpers.count):
                self.ready.append(helpers.submit(_ready))
        except (OSError, RuntimeError, BrokenProcessPool) as exc:  # no process slots, or stopped meanwhile
            self.error = exc

    def wait(self) -> None:
        """Until every helper has been asked for: one being started must exist before it can be stopped (a helper
        started after `Helpers.stop` would never be told to exit, and this process would wait for it at exit)."""
        self._thread.join()

    @property
    def asked(self) -> bool:
        """Every helper has been asked for (or asking failed)."""
        return not self._thread.is_alive()

    def failed(self) -> BaseException | None:
        """Why no helper can work: asking failed before any was asked for, or every helper failed to start."""
        if not self.asked:
            return None
        if not self.ready:
            return self.error or RuntimeError("no helper was asked for")
        if all(f.done() and f.exception() is not None for f in self.ready):
            return self.ready[0].exception()
        return None


def _stop(asked: tuple[Helpers, _Starter] | None) -> None:
    """Stop helpers that were asked for, once each exists (`_Starter.wait`), even if a second Ctrl-C cuts the
    wait short."""
    if asked is None:
        return
    helpers, starter = asked
    try:
        starter.wait()
    finally:
        helpers.stop()


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
        if self.jobs <= 1 or len(tasks) <= 2:  # a helper would get one image at best, after its start-up
            alone.run(tasks, work, finish, starting, hand_out)
            return
        start_server()  # its imports run while this process does the first image
        # From here other processes (the server's imports, then the helpers) share the cores with this one, which
        # works on one OpenCV thread (-j N means N cores): OpenCV's second thread would spin waiting for a core.
        with one_opencv_thread():
            self._run(deque(tasks), alone, work, finish, starting, hand_out)

    def _run(
        self, queue: deque[Task], alone: InProcess, work: Work, finish: Finish, starting: Starting, hand_out: HandOut
    ) -> None:
        """`run` once helpers may pay: the first image here, then helpers if the rest outlasts their start-up (a
        large batch asks for them before its first image, `EARLY_ASK_IMAGES`)."""
        early = self._ask(len(queue)) if len(queue) >= EARLY_ASK_IMAGES else None
        try:
            task = queue.popleft()
            starting(task_name(task))
            began = time.perf_counter()
            finish(*work(hand_out(task)))
        except BaseException:
            _stop(early)
            raise
        per_image = time.perf_counter() - began
        if len(queue) < 2 or len(queue) * per_image / 2 <= HELPER_START_SECONDS:  # one image left: a helper cannot help
            _stop(early)
            alone.run(list(queue), work, finish, starting, hand_out)  # done sooner alone than with a helper
            return
        asked = early or self._ask(len(queue) + 1)
        if asked is None:  # no semaphores, no process slots...: this process does it all
            alone.run(list(queue), work, finish, starting, hand_out)
            return
        helpers, starter = asked
        try:
            used = self._share(helpers, starter, queue, work, finish, starting, hand_out)
        except BaseException:
            _stop(asked)
            raise
        starter.wait()
        helpers.close() if used and not queue else helpers.stop()  # unused helpers may still be importing
        alone.run(list(queue), work, finish, starting, hand_out)  # what is left if the helpers could not go on

    def _ask(self, images: int) -> tuple[Helpers, _Starter] | None:
        """The helpers for ``images`` images, asked for from a thread (`_Starter`); None (and a note) when none can
        start."""
        try:
            helpers = Helpers(min(self.jobs, images) - 1)
        except OSError as exc:
            self.notes.append(f"helper processes could not start ({exc}); every image ran in this process")
            return None
        return helpers, _Starter(helpers)

    def _share(
        self,
        helpers: Helpers,
        starter: _Starter,
        queue: deque[Task],
        work: Work,
        finish: Finish,
        starting: Starting,
        hand_out: HandOut,
    ) -> bool:
        """Share the queue with the helpers until it is empty, or until they cannot go on (the rest then
        stays in ``queue`` for this process)."""
        from concurrent.futures import CancelledError
        from concurrent.futures.process import BrokenProcessPool

        died = "its helper process died (out of memory?); retry with fewer --jobs"
        running: dict[Future[Any], Task] = {}
        used = False
        while queue or running:
            reason = None if used else starter.failed()
            if reason is not None:
                self.notes.append(f"helper processes could not start ({reason}); the rest ran in this process")
                return False
            ready = list(starter.ready)
            capacity = _QUEUED_PER_HELPER * sum(1 for f in ready if f.done() and f.exception() is None)
            used = used or capacity > 0
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
