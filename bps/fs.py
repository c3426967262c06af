"""The file system operations of a batch job that `tempfile` and `shutil` would otherwise do.

Every job creates a scratch directory, temporary files beside the files it stages out,
and removes its scratch at the end. `tempfile` imports `shutil` and `random` (and
`shutil` imports `bz2`, `lzma` and `zlib`): a few milliseconds of every job's start-up,
for four small functions. These do the same with `os` alone, with the same names,
permissions and results as the `tempfile` and `shutil` calls they replace.

Standard library only (`os`, already loaded by the interpreter).
"""

from __future__ import annotations

import os
from pathlib import Path

_O_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

#: the directory `default_temp_dir` found, as `tempfile.gettempdir` keeps it for the process
_temp_dir: str | None = None


def _random_name() -> str:
    return os.urandom(6).hex()


def new_temporary(directory: str | Path, prefix: str, mode: int = 0o600) -> tuple[int, str]:
    """A new, empty file ``<directory>/<prefix><random>``, open for writing: ``(fd, absolute path)``.

    As ``tempfile.mkstemp(prefix=prefix, dir=directory)``: created exclusively (never an
    existing file, never through a symbolic link), readable by its owner only. A file that
    becomes a published one under its final name passes ``mode=0o666``: the mode of a
    plain ``open``, less the umask, so that others may read it as they read the files a
    single-node run writes.
    """
    directory = os.path.abspath(directory)
    while True:
        path = os.path.join(directory, prefix + _random_name())
        try:
            return os.open(path, _O_NEW, mode), path
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def new_directory(directory: str | Path | None, prefix: str) -> str:
    """A new directory ``<directory>/<prefix><random>``, mode 0700; its absolute path.

    As ``tempfile.mkdtemp(prefix=prefix, dir=directory)``: ``directory`` None means
    `default_temp_dir`. The random part is 12 hexadecimal digits.
    """
    base = os.path.abspath(directory if directory is not None else default_temp_dir())
    while True:
        path = os.path.join(base, prefix + _random_name())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        return path


def default_temp_dir() -> str:
    """The system temporary directory, found as `tempfile.gettempdir` finds it.

    The first of ``$TMPDIR``, ``$TEMP``, ``$TMP``, ``/tmp``, ``/var/tmp``, ``/usr/tmp`` and
    the current directory in which a file can be created; found once per process.

    Raises
    ------
    FileNotFoundError
        If none of them is usable (the message lists them).
    """
    global _temp_dir
    if _temp_dir is not None:
        return _temp_dir
    candidates = [os.environ[name] for name in ("TMPDIR", "TEMP", "TMP") if os.environ.get(name)]
    candidates += ["/tmp", "/var/tmp", "/usr/tmp"]
    try:
        candidates.append(os.getcwd())
    except (AttributeError, OSError):
        candidates.append(os.curdir)
    for candidate in candidates:
        if candidate != os.curdir:
            candidate = os.path.abspath(candidate)
        for _ in range(100):
            probe = os.path.join(candidate, _random_name())
            try:
                fd = os.open(probe, _O_NEW, 0o600)
            except FileExistsError:  # pragma: no cover - 48 random bits
                continue
            except OSError:  # not writable, not a directory, absent: the next candidate
                break
            try:
                os.write(fd, b"blat")
            finally:
                os.close(fd)
                os.unlink(probe)
            _temp_dir = candidate
            return candidate
    raise FileNotFoundError(
        f"no usable temporary directory among {candidates}: set $TMPDIR to a writable one"
    )


def remove_tree(path: str | Path) -> None:
    """Remove the directory ``path`` with everything in it, as far as possible; never raises.

    As ``shutil.rmtree(path, ignore_errors=True)``: symbolic links are removed, never
    followed (a job's scratch links its inputs from the shared datastore), and ``path``
    itself is left alone if it is a symbolic link.
    """
    if os.path.islink(path):
        return
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    remove_tree(entry.path)
                else:
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
    except OSError:
        pass
    try:
        os.rmdir(path)
    except OSError:
        pass
