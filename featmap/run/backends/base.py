"""The back-end interface and the simplest back end, this process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["Backend", "Finish", "HandOut", "InProcess", "Outcome", "Starting", "Task", "Work"]

#: One image to process: its index in the batch, the input and the job (both picklable).
Task = tuple[int, Any, Any]
#: What the per-image function returns: the index, the result (None on failure) and the failure's reason.
Outcome = tuple[int, Any, "str | None"]
#: The per-image function; module-level, so that it pickles by name.
Work = Callable[[Task], Outcome]
#: Called by a back end with each outcome, in the caller's process (the manifest and progress live there).
Finish = Callable[[int, Any, "str | None"], None]
#: Called with an input's name when this process starts on it (for the progress bar).
Starting = Callable[[str], None]
#: Called with each task as it is handed out (the batch journals its targets); returns the task to run.
HandOut = Callable[[Task], Task]


def _as_is(task: Task) -> Task:
    return task


class Backend(Protocol):
    """Runs ``work`` over tasks and calls ``finish`` with each outcome in this process, in any order.

    On an exception or interrupt in ``run`` (Ctrl-C included), a back end cancels outstanding work and makes
    sure nothing of it still runs (or can still write) before it re-raises; the caller then removes the
    outputs of images that did not finish.
    """

    name: str

    def run(
        self, tasks: Sequence[Task], work: Work, finish: Finish, starting: Starting, hand_out: HandOut = _as_is
    ) -> None:
        """Process every task; return when each has been passed to ``finish``."""
        ...


def task_name(task: Task) -> str:
    """An input's name for the progress bar."""
    item = task[1]
    return str(getattr(item, "url", None) or item.path)


class InProcess:
    """Every image in this process, one after another."""

    name = "in-process"

    def __init__(self) -> None:
        self.notes: list[str] = []

    def run(
        self, tasks: Sequence[Task], work: Work, finish: Finish, starting: Starting, hand_out: HandOut = _as_is
    ) -> None:
        """Process the tasks in order."""
        for task in tasks:
            starting(task_name(task))
            finish(*work(hand_out(task)))
