"""Replace a file atomically: readers (and a crash) see the old content or the new, never a mix.

One way to do it for every file the software writes whole (configs, pipelines, graph
files, run records, manifests, workflow files): write a temporary file in the target's
directory (a rename is atomic only within a filesystem), flush it, optionally ``fsync``
it, rename it over the target; on any failure, remove the temporary and re-raise, so no
half-written file and no stray temporary stay behind.

``fsync=True`` (the default) puts the content on disk before the rename: without it a
power loss can leave the *new name* with empty content on some filesystems. Pass
``fsync=False`` only for files that are cheap to recreate and written often.

Temporary names are ``<name><mark><random>``; callers that clean up after killed
writers (which leave their temporaries behind) glob for ``<name><mark>*`` with the same
``mark``. The temporary is created with the permissions of a plain ``open`` (0666 less
the umask), not `tempfile.mkstemp`'s 0600: batch jobs run as another user and must be
able to read what the submitter wrote.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["TMP_MARK", "atomic_open", "atomic_write_bytes", "atomic_write_text"]

#: What marks a temporary file of this module: ``<name>.tmp-<random>``.
TMP_MARK = ".tmp-"


@contextmanager
def atomic_open(
    path: str | Path,
    mode: str = "w",
    *,
    fsync: bool = True,
    mark: str = TMP_MARK,
    buffering: int = -1,
) -> Iterator[IO[Any]]:
    """Open a temporary file to be renamed over ``path`` when the block ends without an exception.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        The file to replace. Its directory must exist.
    mode : `str`
        ``"w"`` (text, UTF-8) or ``"wb"``; ``"w+b"`` for writers that seek back.
    fsync : `bool`
        Sync the content to disk before the rename.
    mark : `str`
        Part of the temporary name (see the module docstring).
    buffering : `int`
        Passed to `open`.
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a new file; mode must start with 'w', not {mode!r}")
    path = Path(path)
    fd, tmp = _create_temporary(path, mark)
    try:
        with os.fdopen(fd, mode, buffering, encoding=None if "b" in mode else "utf-8") as stream:
            yield stream
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _create_temporary(path: Path, mark: str) -> tuple[int, str]:
    """A new, empty file beside ``path`` named ``<name><mark><random>``, open for writing."""
    while True:
        tmp = str(path.with_name(f"{path.name}{mark}{os.urandom(6).hex()}"))
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True, mark: str = TMP_MARK) -> None:
    """Replace ``path`` with ``data`` atomically (see `atomic_open`)."""
    with atomic_open(path, "wb", fsync=fsync, mark=mark) as stream:
        stream.write(data)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = True, mark: str = TMP_MARK) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically (see `atomic_open`)."""
    with atomic_open(path, "w", fsync=fsync, mark=mark) as stream:
        stream.write(text)
