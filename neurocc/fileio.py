"""Outputs: checked before any work, written atomically, with the user's umask.

Every output appears whole under its final name, or not at all. ``output_file`` and ``output_folder``
check a destination before a command starts its work, so that a bad path fails at once, not after an hour
of simulation; the writers check again when they write.

* A file output (``--json``, ``--plot``) may be absent or a regular file. A symlink is followed: the file it
  names is replaced (in its own folder, atomically) and the link stays. A folder, a device or any other
  special file is refused, and so is a name the file system cannot hold.
* A folder output (``compile -o``) may be absent or a neurocc artifact that ``may_replace`` recognises;
  anything else (a folder with other files, a file, a symlink) is refused and left untouched.

Temporary names are ``.NAME.PID.RANDOM.tmp`` beside the destination; leftovers of a process that no longer
runs (killed with SIGKILL, say) are removed the next time the same destination is written.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable

from neurocc.errors import NeuroccError

COMMITTED: list = []            # outputs completed by this process (the command line's interrupt message names them)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_folder(folder: Path, what: str) -> None:
    if not folder.exists():
        raise NeuroccError(f"cannot write {what!r}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise NeuroccError(f"cannot write {what!r}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NeuroccError(f"cannot write {what!r}: folder {str(folder)!r} is not writable")


def _check_name(path: Path, what: str) -> None:
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(path.name.encode()) + 40 > limit:          # room for the temporary name's prefix and suffix
        raise NeuroccError(f"cannot write {what!r}: the name is longer than this file system allows")


def output_file(path: str | Path) -> Path:
    """The file an output will replace (symlinks followed), after checking it can be written there."""
    what = str(path)
    target = Path(os.path.realpath(path))
    if Path(path).is_symlink() and not target.parent.is_dir():
        raise NeuroccError(f"cannot write {what!r}: it is a symlink to {str(target)!r}, whose folder does not exist")
    if target.exists() and not target.is_file():
        raise NeuroccError(f"cannot write {what!r}: it exists and is not a regular file")
    _check_folder(target.parent, what)
    _check_name(target, what)
    return target


def output_folder(path: str | Path, may_replace: Callable[[Path], bool]) -> Path:
    """The folder an artifact will be written to, after checking that writing it loses nothing."""
    path = Path(path)
    what = str(path)
    if path.is_symlink():
        raise NeuroccError(f"{what!r} is a symlink; give the artifact's own path")
    if path.exists() and not (path.is_dir() and may_replace(path)):
        raise NeuroccError(f"{what!r} exists and is not a neurocc artifact (or holds other files); "
                           "refusing to overwrite it")
    _check_folder(path.parent if str(path.parent) else Path("."), what)
    _check_name(path, what)
    return path


def _temporary(parent: Path, name: str, directory: bool) -> Path:
    _remove_stale(parent, name)
    prefix, suffix = f".{name}.{os.getpid()}.", ".tmp"
    if directory:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
    os.close(fd)
    return Path(tmp)


def _remove_stale(parent: Path, name: str) -> None:
    """Remove temporary leftovers for ``name`` whose process is gone."""
    for p in parent.glob(f".{glob.escape(name)}.*.tmp"):
        pid = p.name[len(name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def interrupts_held():
    """Hold SIGINT back: while an output is put in place, so that it is never left half-replaced, and while
    C++ extensions initialise, which abort on an exception raised inside their Python callbacks. The
    process-wide handler records the interrupt instead of raising (whichever thread the signal reaches);
    KeyboardInterrupt is raised when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending and previous is signal.default_int_handler:
            raise KeyboardInterrupt


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside the destination and rename it into place."""
    target = output_file(path)
    tmp = _temporary(target.parent, target.name, directory=False)
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())
        with interrupts_held():
            os.replace(tmp, target)
            COMMITTED.append(str(path))
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(e, OSError):                       # a full disk, an I/O error: the machine's, not a bug
            raise NeuroccError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        raise
    return target


@contextlib.contextmanager
def atomic_directory(path: str | Path, may_replace: Callable[[Path], bool]):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename.

    An existing ``path`` is replaced only if ``may_replace(path)`` says it is ours (an earlier artifact
    and nothing else); otherwise nothing is touched and a ``NeuroccError`` explains why.
    """
    path = output_folder(path, may_replace)
    parent = path.parent if str(path.parent) else Path(".")
    tmp = _temporary(parent, path.name, directory=True)
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        with interrupts_held():
            output_folder(path, may_replace)         # nothing else appeared there meanwhile
            old = None
            if path.exists():
                old = _temporary(parent, path.name, directory=True)
                os.replace(path, old / "artifact")
            os.replace(tmp, path)
            COMMITTED.append(str(path))
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise NeuroccError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        raise
