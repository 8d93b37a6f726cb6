"""Writing files so that a failure loses nothing: a temporary file beside the target, flushed and
fsynced, then renamed over it. A reader sees the old file or the new one, never a partial one; a
full disk or a killed process leaves the old file as it was and no temporary file behind.

    atomic_write(path, lambda f: torch.save(obj, f))   # any writer of a binary file object
    atomic_write_text(path, text)

Writers get a Python file object, never a path: torch.save on a path turns ENOSPC into a RuntimeError
("unexpected pos ..."); on a file object the OSError survives as the RuntimeError's context, and
atomic_write raises that OSError. Temporary files are named
`.<name>.<host>.<pid>.<random>.tmp`; one left by a killed process of this host (its pid gone) is
removed by the next write of the same file.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
_UMASK = os.umask(0o022)
os.umask(_UMASK)   # read once: written files get the mode open() would give them, not mkstemp's 0600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files of `path` left by dead processes of this host (a SIGKILL during a write)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{re.escape(_HOST)}\.(\d+)\..*\.tmp$")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            sibling.unlink(missing_ok=True)


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind `err`: itself, or the one a RuntimeError was raised while handling (torch.save
    meets ENOSPC in a write, then fails again in its clean-up: "unexpected pos ...")."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError):
            return err
        if not isinstance(err, RuntimeError):
            return None
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` with write(f) through a temporary file in the same directory, then rename it.

    Raises what writing raised (OSError for a full disk or a missing permission); `path` is then
    untouched and the temporary file removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        underlying = _os_error(err)
        if underlying is not None and underlying is not err:
            raise underlying from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def reason(err: BaseException) -> str:
    """An OSError's reason in a few words ("No space left on device"), else its first line."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
