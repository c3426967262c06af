"""Publishing a batch job's output at its datastore path without replacing a registered file.

With shared staging a job puts each output at its final datastore path itself, long
before ``bps finalize`` registers it. The path may already hold a file: the job's own
leftover from an earlier attempt that was killed after publishing but before recording
the quantum in its manifest, or the file of a dataset that was registered after the
graph was planned (``supertask run`` into the same RUN, the finalize of another
workflow, an earlier run into the same RUN). The first must be replaced; the second
never may, or the registry would point at bytes that no longer match its checksum.

`publish` tells them apart without opening the registry on the normal path (job
start-up and stage-out are hot paths; jobs never write the registry):

1. The output is copied next to its destination under a temporary name and synced.
2. ``os.link(tmp, dest)`` publishes it only if ``dest`` does not exist (atomic; fails
   with ``EEXIST``). On a filesystem without hard links the name is reserved with
   ``O_CREAT | O_EXCL`` and the complete file renamed over the (own, empty) reservation.
3. If ``dest`` exists with the same size and checksum, it is kept: a rerun of a
   deterministic quantum is idempotent.
4. Otherwise, and only then, the caller's ``registered`` callback looks the one dataset
   up in the registry, read-only. Registered: `RegisteredOutputError`, the file is left
   alone. Not registered: a leftover of an earlier attempt, replaced atomically.

``bps finalize`` puts the files that file-transfer staging brought back in place the
same way (with the manifest's size and checksum as ``expected``).

Races. Within one workflow, only attempts of the job that owns a quantum write its
outputs, and ``bps finalize`` (the only writer of that workflow's registrations) runs as
the final job, after every job has ended (DAGMan's FINAL node, Pegasus's last job, the
local WMS's final job; a restart runs the failed jobs first, then finalize again), so no
job of a workflow publishes while its own finalize registers. A file registered by
anyone before step 4 reads the registry is seen as registered and never replaced.
What remains is another writer registering the same dataset of the same RUN at the same
moment: the executor (or ``Butler.put``) renames its file into place inside its
registration transaction, and a job whose step 4 reads the registry after that rename
but before that commit sees "not registered" and replaces the file. Planning refuses
to write outputs that are registered, so this needs two plans of the same outputs made
before either ran, run at once; ``bps finalize`` then rejects the job's quantum (the
registered checksum is not the job's), and ``Butler.get(verify=True)`` detects it.

Standard library only: this module is imported at every job's start-up.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from .staging import _unlink_quietly, copy_to_temporary, file_matches

#: ``os.link`` errors meaning "this filesystem has no hard links" (not "the name exists")
_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
)


class RegisteredOutputError(Exception):
    """The destination holds other bytes and the registry says they are a registered dataset's file."""


class SourceMismatchError(ValueError):
    """The source is not the file its record describes (size or checksum); nothing was published."""


def publish(
    src: str | Path,
    dest: str | Path,
    registered: Callable[[], str | None],
    expected: tuple[int, str] | None = None,
) -> tuple[int, str]:
    """Copy ``src`` to ``dest`` unless ``dest`` holds another, registered file; return size and checksum.

    Parameters
    ----------
    src
        The complete output (in scratch).
    dest
        Its datastore path.
    registered
        Called only when ``dest`` exists with other content: what identifies the
        registered dataset whose file ``dest`` is (``run_quantum`` returns its registered
        checksum; the text of the error), or ``None`` if it is not registered. It may
        raise (registry unreachable): then nothing is replaced.
    expected
        ``(size, checksum)`` the source must have (a manifest's record), checked on
        the copy before it is published: a file that is not what was recorded never
        reaches the datastore.

    Raises
    ------
    RegisteredOutputError
        If ``dest`` is a registered dataset's file with other content (left unchanged).
    SourceMismatchError
        If ``src`` is not ``expected`` (``dest`` unchanged).
    OSError
        For I/O failures (``dest`` is then unchanged, or absent).
    """
    src, dest = Path(src), Path(dest)
    tmp, size, checksum = copy_to_temporary(src, dest)
    try:
        if expected is not None and (size, checksum) != tuple(expected):
            raise SourceMismatchError(f"{src} does not match its record (size or checksum)")
        if _place_new(tmp, dest) or file_matches(dest, size, checksum):
            return size, checksum
        what = registered()
        if what is not None:
            raise RegisteredOutputError(what)
        os.replace(tmp, dest)  # an earlier attempt's unregistered leftover
        return size, checksum
    finally:
        _unlink_quietly(tmp)


def _place_new(tmp: str, dest: Path) -> bool:
    """Give ``tmp``'s file the name ``dest`` if that name is free; False if it is taken."""
    try:
        os.link(tmp, dest)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
    try:  # no hard links here: reserve the name, then replace the own, empty reservation
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    os.replace(tmp, dest)
    return True
