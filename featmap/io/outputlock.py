"""One featmap run at a time in an output folder: the lock file, and clearing what a killed run left."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from featmap.errors import FeatmapError, OutputBusyError

__all__ = ["LOCK_NAME", "OutputLock"]

LOCK_NAME = ".featmap.lock"
_TEMP = re.compile(r"^\..+\.\d+\.tmp$")  # `featmap.io.images.atomic_write`'s temporary files


def _folder_error(out_dir: Path, exc: OSError) -> FeatmapError:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return FeatmapError(str(out_dir), "is a file (or under one), not a folder", "choose another -o folder")
    return FeatmapError(str(out_dir), f"cannot be written ({exc.strerror or exc})", "choose a folder you can write to")


class OutputLock:
    """One featmap run at a time in an output folder: ``.featmap.lock`` holds the run's pid, under an
    advisory ``flock`` that the system releases when the process dies, however it dies.

    Taking the lock after a killed run clears what that run left: its lock file and its temporary
    files (``.NAME.PID.tmp``, never a finished output; looked for only when a lock file was left, since every
    run that writes holds the lock and removes its file when it ends). A live run's lock raises `OutputBusyError`.
    ``cleared`` lists what was cleared, for a note.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_NAME
        self.cleared: list[str] = []
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the folder (creating it), or raise `OutputBusyError` naming the run that holds it."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            unclean = self.path.exists()  # a run that ended cleanly removed it; a killed one could not
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _folder_error(self.out_dir, exc) from None
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            raise OutputBusyError(
                str(self.out_dir),
                f"is being written by another featmap run ({_describe(holder)})",
                f"wait for it to finish or stop it; its lock is {self.path}",
            ) from None
        except (ImportError, OSError):  # no flock here (another OS, some network file systems): unguarded
            pass
        self._fd = fd
        try:
            stale = os.read(fd, 4096).decode(errors="replace").strip()
            if stale:
                self.cleared.append(f"a stale lock ({_describe(stale)}, no longer running)")
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
            temps = 0
            # Temporary files are left only by a run killed while it held the folder, which leaves its lock file:
            # without one the folder is not walked (a resume's holds 250,000 folders).
            for folder, _, files in os.walk(self.out_dir) if unclean else ():
                for name in files:
                    if _TEMP.match(name):
                        try:
                            os.unlink(os.path.join(folder, name))
                            temps += 1
                        except OSError:
                            pass
            if temps:
                self.cleared.append(f"{temps} temporary file{'' if temps == 1 else 's'} of an unfinished run")
        except BaseException:  # an interrupt meanwhile: the folder is given up again
            if unclean:  # a killed run's leftovers may remain: the lock file stays, so the next run clears them
                os.close(fd)
                self._fd = None
            else:
                self.release()
            raise
        return self

    def release(self) -> None:
        """Give the folder up (the lock file is removed)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(holder: str) -> str:
    try:
        info = json.loads(holder)
        return f"pid {info['pid']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "pid unknown"
