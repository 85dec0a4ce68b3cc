"""One run per folder: a second ``abawkit run`` or training on a folder in use stops with an error naming the
first run's process, instead of both writing there.

The lock is ``flock`` on ``<folder>/.abawkit.lock``: the kernel drops it when the holder exits, however it ends
(SIGKILL, a crash, a lost node), so a killed run never leaves the folder stuck. The file's text (process,
host, command, start) is only there to name the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_NAME = ".abawkit.lock"


class FolderInUseError(UserError):
    """Another live process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created when missing) while the block runs; ``what`` names this run."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a process that has not named itself yet"
        os.close(fd)
        raise FolderInUseError(f"{folder} is in use by another run ({holder}); wait for it to finish, stop it, or "
                               f"give this run another folder") from None
    try:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, {what}, since {started}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the stale text is harmless (only flock counts)


def command_line() -> str:
    """The command of this process, for the lock's text (``abawkit train-frame --out ...``)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
