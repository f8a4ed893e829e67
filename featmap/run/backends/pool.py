"""The local pool: this process plus up to ``jobs - 1`` helper processes, started only when they pay off.

A batch of three images or more starts the helpers' fork server at once (`featmap.run.workers.start_server`;
``featmap apply`` starts it earlier still, before it builds the job) and runs on one OpenCV thread from then on, so
``-j N`` means N cores: the server's imports, then the helpers, share the cores with this process, and OpenCV's
second thread would only spin waiting for one. This process starts on the first image at once, and from that image's
time judges the rest: helpers are used only when the remaining work outlasts their start-up (a batch of
`EARLY_ASK_IMAGES` or more has asked for them already, so that their start overlaps that image; they are stopped if
it says they do not pay). Helpers are started from a thread (`_Starter`), since a helper's start waits until the
server has finished its imports, and this process must not wait with it (it did: ~0.3-0.5 s a batch). Every helper
gets the whole batch once, as it starts; from then on images are handed out as positions in one pipe that this
process keeps a few ahead and pulls from itself between finishing what the helpers sent (`featmap.run.workers.Helpers`):
a helper still starting simply pulls nothing yet, and the last images go to whoever is free first. Helpers
are not forked from this process: a child forked after OpenCV has started its thread pool hangs in its first OpenCV
call (measured here: such helpers never became ready). They are forked by the server, a fresh interpreter with
featmap's modules imported, so a helper costs a fork once the server is up, not ~0.3 s of interpreter start-up and
imports each. A 2-image batch never starts a helper.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

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
#: Images given out per working helper (with one for this process): one it runs, and some waiting in the pipe,
#: so that no helper idles while this process works on an image. Nothing is assigned: whoever is free pulls.
_QUEUED_PER_HELPER = 3
#: Helpers are given the batch a block at a time (each helper holds its block's tasks, ~1 kB each), so that a folder
#: of 10⁶ images does not put 10⁶ tasks in every helper; each block's helpers cost a fork and ~30 ms of start-up.
_BLOCK = 10_000
#: An image whose helper died on it.
DIED = "its helper process died (out of memory?); retry with fewer --jobs"


class _Starter:
    """Starts the helpers from a thread (`Helpers.start`): a start waits for the fork server to finish its imports
    (up to ~0.4 s when the batch is quick to begin), and this process works meanwhile."""

    def __init__(self, helpers: Helpers) -> None:
        self.error: BaseException | None = None  # why no (further) helper could start
        self._thread = threading.Thread(target=self._start, args=(helpers,), name="featmap-helper-start", daemon=True)
        self._thread.start()

    def _start(self, helpers: Helpers) -> None:
        try:
            while helpers.start():
                pass
        except (OSError, RuntimeError, ValueError) as exc:  # no process slots, no semaphores, ...
            self.error = exc

    def wait(self) -> None:
        """Until every helper has started (or starting failed)."""
        self._thread.join()


def _stop(asked: tuple[Helpers, _Starter] | None) -> None:
    """Stop helpers that were asked for, once each being started exists (`Helpers.stop` waits for the one being
    started), even if a second Ctrl-C cuts the wait for the others short."""
    if asked is None:
        return
    helpers, starter = asked
    try:
        starter.wait()
    finally:
        helpers.stop()


class LocalPool:
    """This process and up to ``jobs - 1`` helpers (see the module's docstring)."""

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
            self._run(list(tasks), alone, work, finish, starting, hand_out)

    def _run(
        self, tasks: list[Task], alone: InProcess, work: Work, finish: Finish, starting: Starting, hand_out: HandOut
    ) -> None:
        """`run` once helpers may pay: the first image here, then helpers if the rest outlasts their start-up (a
        large batch asks for them before its first image, `EARLY_ASK_IMAGES`)."""
        early = self._ask(tasks[1 : 1 + _BLOCK], work) if len(tasks) >= EARLY_ASK_IMAGES else None
        try:
            starting(task_name(tasks[0]))
            began = time.perf_counter()
            finish(*work(hand_out(tasks[0])))
        except BaseException:
            _stop(early)
            raise
        per_image = time.perf_counter() - began
        rest = len(tasks) - 1
        if rest < 2 or rest * per_image / 2 <= HELPER_START_SECONDS:  # one image left: a helper cannot help
            _stop(early)
            alone.run(tasks[1:], work, finish, starting, hand_out)  # done sooner alone than with a helper
            return
        asked = early or self._ask(tasks[1 : 1 + _BLOCK], work)
        for first in range(1, len(tasks), _BLOCK):  # a block at a time (`_BLOCK`)
            block = tasks[first : first + _BLOCK]
            asked = asked if first == 1 else self._ask(block, work)
            if asked is None:  # no pipes, no shared memory...: this process does the rest
                alone.run(tasks[first:], work, finish, starting, hand_out)
                return
            helpers, starter = asked
            try:
                self._share(helpers, block, work, finish, starting, hand_out)
                starter.wait()
            except BaseException:
                _stop(asked)
                raise
            helpers.close()
            ran = "every image ran in this process" if helpers.started == 0 else "the rest ran in the others"
            note = f"helper processes could not start ({starter.error}); {ran}"
            if starter.error is not None and note not in self.notes:
                self.notes.append(note)

    def _ask(self, tasks: list[Task], work: Work) -> tuple[Helpers, _Starter] | None:
        """The helpers for ``tasks``, started from a thread (`_Starter`); None (and a note) when none can."""
        try:
            helpers = Helpers(min(self.jobs - 1, len(tasks)), work, tasks)
        except OSError as exc:
            self.notes.append(f"helper processes could not start ({exc}); every image ran in this process")
            return None
        return helpers, _Starter(helpers)

    def _share(
        self, helpers: Helpers, tasks: list[Task], work: Work, finish: Finish, starting: Starting, hand_out: HandOut
    ) -> None:
        """Every task of a block, pulled by this process and the helpers alike (`Helpers`): between its own
        images this process finishes what the helpers sent and gives out more, a few per working helper."""
        position_of = {task[0]: position for position, task in enumerate(tasks)}
        held: set[int] = set()  # given out (pulled or not), not finished
        given = 0

        def settle(wait: bool) -> None:
            outcomes, ended = helpers.collect(wait)
            for outcome in outcomes:
                held.discard(position_of[outcome[0]])
                finish(*outcome)
            for code, position in ended:
                said = "no image was lost"
                if position is not None and position in held:
                    held.discard(position)
                    finish(tasks[position][0], None, DIED)
                    said = f"{task_name(tasks[position])} failed"
                self.notes.append(f"a helper process died (exit code {code}); {said}, the others ran on")

        while given < len(tasks) or held:
            settle(wait=False)
            while given < len(tasks) and len(held) < 1 + _QUEUED_PER_HELPER * helpers.working:
                if hand_out(tasks[given]) is not tasks[given]:
                    raise TypeError("hand_out changed a task: the pool's helpers have every task from their start")
                helpers.give(given)
                held.add(given)
                given += 1
            position = helpers.take()
            if position is None and given < len(tasks):  # the helpers took all that was given: the next is this one's
                hand_out(tasks[given])
                position, given = given, given + 1
                held.add(position)
            if position is not None:
                starting(task_name(tasks[position]))
                outcome = work(tasks[position])
                held.discard(position)
                finish(*outcome)
            elif held and helpers.working:
                settle(wait=True)  # every image given out is in a helper: wait for one to finish (or die)
            elif held:  # no helper works, so nobody holds these (never seen: a dead helper's slot said what it held)
                for position in sorted(held):
                    finish(tasks[position][0], None, DIED)
                held.clear()
