"""Atomic file writes and output locks: the one way posecurator writes a result file.

Every result (JSON, Markdown, weights, ``.npz``) is written to a temporary file in the same folder
(``.NAME.XXXXXXXX.tmp``), flushed to disk (``fsync``) and renamed over ``NAME`` with
:func:`os.replace`. A reader therefore sees the old file or the new one, never half of one; a
failure removes the temporary file; only a hard kill (SIGKILL, power loss) can leave one behind,
and :func:`remove_stale_temps` clears those of a folder its caller owns.

:func:`output_lock` serialises writers of one output path (a file or a folder) across processes
with ``fcntl.flock`` on a sibling lock file ``.NAME.lock``: a second writer waits, or with
``wait=False`` fails at once with a :class:`~posecurator.errors.PoseCuratorError`.

Test hook: :func:`test_kill_point` ends the process (``os._exit(137)``, as a SIGKILL would) at a
named point when the environment variable ``POSECURATOR_TEST_KILL_POINT`` names it; used only by
``tests/test_resume.py`` to kill a run between two steps of a checkpoint write.

This module sits at the base layer: it imports nothing of posecurator but :mod:`posecurator.errors`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from posecurator.errors import PoseCuratorError

FILE_MODE = 0o644  # mkstemp makes owner-only files; results are meant to be shared
KILL_POINT_ENV = "POSECURATOR_TEST_KILL_POINT"
# mkstemp names: ".NAME." + 8 characters of [a-z0-9_] + ".tmp"
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


# ------------------------------------------------------------------------------ atomic writes
def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse directory fds)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: str | os.PathLike) -> Path:
    """A new empty temporary file next to ``path`` (``.NAME.XXXXXXXX.tmp``, mode 644); the caller
    renames it into place or removes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, FILE_MODE)
    return Path(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, sync: bool = True) -> Path:
    """Call ``write(tmp)`` to fill a temporary file next to ``path``, fsync it and rename it over
    ``path``. The temporary file is removed when anything fails (also on KeyboardInterrupt).
    ``sync=False`` leaves the fsync to the caller (files inside a folder that is synced and
    renamed into place as a whole)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # a writer may have made the file anew (safetensors does)
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def json_default(o):
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays as plain numbers and
    lists, paths as text; anything else is a TypeError naming its type."""
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike, obj, *, indent: int | None = 1, default=json_default, **dumps_options) -> Path:
    """Write ``obj`` as JSON (``json.dumps(obj, indent=indent, default=default, ...)``; numpy values
    and paths are written as plain JSON by :func:`json_default`) atomically. The text is made
    before the file is touched, so an unserialisable object writes nothing."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default, **dumps_options))


def atomic_savez(path: str | os.PathLike, *, _sync: bool = True, **arrays) -> Path:
    """``numpy.savez(path, **arrays)`` atomically (unlike ``numpy.savez`` no ``.npz`` suffix is
    added). Object arrays are refused: they would be pickled, and posecurator never pickles.
    ``_sync=False``: see :func:`atomic_write`."""
    arrays = {k: np.asanyarray(v) for k, v in arrays.items()}
    for key, value in arrays.items():
        if value.dtype.hasobject:
            raise ValueError(f"array {key!r} has dtype object; .npz files of posecurator hold plain arrays only")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
            np.savez(f, **arrays)

    return atomic_write(path, write, sync=_sync)


def atomic_link(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Make ``dst`` name the file ``src`` atomically: a hard link (no copy) renamed over ``dst``,
    or, where the file system has no hard links, a copy. ``src`` must never be changed in place
    afterwards (posecurator only ever replaces files by renaming)."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and os.path.samefile(src, dst):
        return dst  # already so (and rename() of two links to one file would do nothing at all)
    tmp = temp_path(dst)
    try:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)  # still there only on failure, or if dst became src meanwhile
    _fsync_dir(dst.parent)
    return dst


def replace_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Put the finished folder ``tmp`` in the place of ``target`` (which may exist): the old one is
    moved aside, the new one renamed in, the old one removed, all while holding ``target``'s
    :func:`output_lock`, so a reader never sees half a folder and two writers never collide."""
    tmp, target = Path(tmp), Path(target)
    with output_lock(target):
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    return target


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Write a whole output folder at once: yields an empty temporary folder next to ``target``;
    on a clean exit it takes ``target``'s place (:func:`replace_dir`), on any error it is removed,
    so ``target`` is never half-written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes an owner-only folder; results are meant to be shared
    try:
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stale_temps(folder: str | os.PathLike, names: Callable[[str], bool] | None = None) -> list[Path]:
    """Temporary files (``.NAME.XXXXXXXX.tmp``, as :func:`temp_path` makes them) in ``folder``
    whose target ``NAME`` passes ``names`` (None: all of them)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _TEMP_RE.match(p.name)
        if m and p.is_file() and (names is None or names(m.group("name"))):
            out.append(p)
    return sorted(out)


def remove_stale_temps(folder: str | os.PathLike, names: Callable[[str], bool] | None = None) -> int:
    """Remove the temporary files :func:`stale_temps` lists: only for a folder whose writers the
    caller excludes (it holds the folder's :func:`output_lock`). Returns how many went."""
    found = stale_temps(folder, names)
    for p in found:
        p.unlink(missing_ok=True)
    return len(found)


# ------------------------------------------------------------------------------ output locks
_held = threading.local()  # lock paths this thread holds -> depth (the lock is re-entrant per thread)


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output path: ``.NAME.lock`` next to it."""
    path = Path(os.path.abspath(path))
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, *, wait: bool = True) -> Iterator[Path]:
    """Hold the writer's lock of ``path`` (a file or folder) for the ``with`` block.

    Another process holding it makes this wait, or with ``wait=False`` raise
    ``PoseCuratorError("another posecurator process is writing PATH")``. The lock file
    ``.NAME.lock`` is removed on release; the lock is re-entrant within one thread. The kernel
    drops the lock of a killed process, so a crash never leaves the output locked."""
    lock = lock_path(path)
    depths = getattr(_held, "depths", None)
    if depths is None:
        depths = _held.depths = {}
    if depths.get(lock):
        depths[lock] += 1
        try:
            yield lock
        finally:
            depths[lock] -= 1
        return
    fd = _acquire(lock, wait=wait, what=path)
    depths[lock] = 1
    try:
        yield lock
    finally:
        depths.pop(lock, None)
        try:
            lock.unlink(missing_ok=True)  # still ours: every other opener waits on this inode
        finally:
            os.close(fd)


def _acquire(lock: Path, *, wait: bool, what) -> int:
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise PoseCuratorError(f"another posecurator process is writing {what}; "
                                   "wait for it to finish or use another output") from None
        except BaseException:
            os.close(fd)
            raise
        # the previous holder removes the file on release: a lock on a removed inode guards
        # nothing, so try again on the file now at that path
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)


def try_lock_folder(folder: str | os.PathLike) -> int | None:
    """An fd holding an exclusive flock on the folder itself, or None when another process holds
    it (or the folder is gone). Writers of temporary folders hold one for their lifetime, so a
    temporary folder that can be locked belongs to a dead writer."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# ------------------------------------------------------------------------------ test hook
def test_kill_point(name: str) -> None:
    """Test hook: end the process at once (exit code 137, no cleanup, like SIGKILL) when
    ``$POSECURATOR_TEST_KILL_POINT`` equals ``name``. Costs one environment lookup otherwise."""
    if os.environ.get(KILL_POINT_ENV) == name:
        os._exit(137)


test_kill_point.__test__ = False  # not a pytest test, despite the name
