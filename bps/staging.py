"""Moving files between the shared store and a job's scratch directory, and the job manifest.

Why this shape
--------------
A job never leaves a half-written file where anything else will read it: every file
is copied next to its destination under a temporary name, flushed, then renamed
(``os.replace`` is atomic within a filesystem). The job's *manifest* lists what it
staged back (dataset, path, size, checksum) and is itself replaced atomically after
each quantum, so the final job registers exactly the files of quanta that finished,
and verifies each against its recorded size and checksum first. A killed job leaves
at worst an orphan temporary file, which the next attempt removes.

"No work" travels as a file too. A quantum that finds no work (``NoWorkFound``, or
a required input that itself had no work) leaves, for each output it would have
made, a small *tombstone* at exactly the place the output would go (datastore path,
or logical file name in file-transfer staging). Every workflow system then moves it
like any output (Pegasus stage-out, HTCondor file transfer, a shared filesystem), so
a consumer in another job, on another node, learns that the input will never exist
by reading the staged file's first line (`is_tombstone`) and runs without it; no
side channel has to reach the worker. The final job never registers a tombstone.

This module is on the start-up path of every batch job: standard library only.
"""

# Annotations here are evaluated at import (no ``from __future__ import annotations``): with
# string annotations, ``typing.NamedTuple`` makes a ``ForwardRef`` of each field, whose
# ``compile`` call costs a batch job Python's one-time compiler set-up (about 2.5 ms CPU).

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

try:  # the built-in module behind hashlib.blake2b; importing it alone skips loading OpenSSL
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import blake2b

from supertask.atomic_write import atomic_write_bytes as _atomic_write_bytes

from .fs import default_temp_dir, new_directory, new_temporary, remove_tree
from .usage import QuantumUsage

MANIFEST_VERSION = 2
#: manifest versions this software reads (1 had no tombstones)
READABLE_MANIFEST_VERSIONS = (1, 2)
#: first line of every tombstone; no storage class writes files that start like this
TOMBSTONE_MAGIC = b"%supertask-no-work-tombstone v1\n"
_CHUNK = 1 << 20
_TMP_MARK = ".bps-tmp-"


class StagingError(OSError):
    """Copying a file in or out of scratch failed (retry may help)."""


class StagedFile(NamedTuple):
    """One output a job staged back: what finalize registers and how it verifies it.

    A named tuple, not a dataclass: every job creates this class, and ``dataclasses``
    (with the ``inspect`` it imports) would be a good part of a job's start-up.
    """

    lfn: str
    dataset_type: str
    units: list[str]
    storage_class: str
    data_id: dict[str, Any]
    path: str
    size: int
    checksum: str
    #: True for a tombstone: the quantum had no work and this output will never exist
    tombstone: bool = False


class Manifest:
    """What one job has staged back, per quantum id (a quantum appears once all its outputs are staged).

    ``root`` is the datastore root the files' ``path`` values are relative to; ``usage``
    holds what each recorded quantum used (its own peak memory, wall time: `bps.usage`),
    absent from manifests written before it was kept.
    """

    __slots__ = ("job", "output_run", "root", "quanta", "version", "usage")

    def __init__(
        self,
        job: str,
        output_run: str,
        root: str,
        quanta: dict[int, list[StagedFile]] | None = None,
        version: int = MANIFEST_VERSION,
        usage: dict[int, QuantumUsage] | None = None,
    ):
        self.job = job
        self.output_run = output_run
        self.root = root
        self.quanta: dict[int, list[StagedFile]] = quanta if quanta is not None else {}
        self.version = version
        self.usage: dict[int, QuantumUsage] = usage if usage is not None else {}

    def __repr__(self) -> str:
        return "Manifest(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def files(self) -> Iterable[StagedFile]:
        for files in self.quanta.values():
            yield from files

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "job": self.job,
            "output_run": self.output_run,
            "root": self.root,
            "quanta": {str(qid): [f._asdict() for f in files] for qid, files in self.quanta.items()},
            "usage": {str(qid): u.to_json() for qid, u in self.usage.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        if data.get("version") not in READABLE_MANIFEST_VERSIONS:
            raise ValueError(
                f"manifest version {data.get('version')!r}; this software reads {READABLE_MANIFEST_VERSIONS}"
            )
        return cls(
            job=data["job"],
            output_run=data["output_run"],
            root=data["root"],
            quanta={int(q): [StagedFile(**f) for f in files] for q, files in data["quanta"].items()},
            usage={int(q): QuantumUsage.from_json(u) for q, u in data.get("usage", {}).items()},
        )


def manifest_path(manifest_dir: str | Path, job: str) -> Path:
    """Where job ``job`` keeps its manifest."""
    return Path(manifest_dir) / f"{job}.manifest.json"


def read_manifest(path: str | Path) -> Manifest | None:
    """The manifest at ``path``, or ``None`` if there is none yet.

    Raises
    ------
    ValueError
        If the file is not a manifest this software can read.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        return Manifest.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a readable job manifest ({err}); delete it to rerun the job") from None


def write_manifest(path: str | Path, manifest: Manifest) -> None:
    """Replace the manifest atomically (a reader sees the old or the new one, never a mix)."""
    atomic_write_text(Path(path), json.dumps(manifest.to_json(), separators=(",", ":")))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and a rename, creating its directory."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`supertask.atomic_write.atomic_write_bytes` with this module's temporary mark, creating the directory.

    The mark is the one orphan clean-up looks for (`write_tombstone`, `copy_to_temporary`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, data, mark=_TMP_MARK)


def checksum_file(path: str | Path) -> str:
    """Checksum of a file's content, as the datastore computes it."""
    h = _hasher()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _hasher() -> blake2b:
    """The hash of datastore checksums (``supertask.repo.datastore.CHECKSUM_ALGORITHM``, blake2b-128).

    Staged and registered checksums must agree with what the datastore computes
    when it verifies a file, so this must follow the datastore.
    """
    return blake2b(digest_size=16)


def copy_atomic(src: str | Path, dest: str | Path) -> tuple[int, str]:
    """Copy ``src`` to ``dest`` so that ``dest`` is either absent, the old file, or complete.

    Returns the size and checksum of what was written. Orphan temporary files of
    earlier, killed attempts at the same destination are removed first.
    """
    tmp, size, checksum = copy_to_temporary(src, dest)
    try:
        os.replace(tmp, dest)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return size, checksum


def copy_to_temporary(src: str | Path, dest: str | Path) -> tuple[str, int, str]:
    """Copy ``src`` beside ``dest`` under a temporary name, synced to disk; return (name, size, checksum).

    The caller gives the copy its final name (or removes it). Orphan temporary files of
    earlier, killed attempts at the same destination are removed first; the copy is
    removed again if it cannot be completed.
    """
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(dest)
    h = _hasher()
    size = 0
    # The copy becomes a datastore file: readable as a plain open would leave it (the
    # umask decides), as the files of a single-node run are, not only by the job's user.
    fd, tmp = new_temporary(dest.parent, dest.name + _TMP_MARK, mode=0o666)
    try:
        with open(src, "rb") as source, os.fdopen(fd, "wb") as target:
            while chunk := source.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp, size, h.hexdigest()


def link_or_copy(src: str | Path, dest: str | Path) -> None:
    """Make ``src`` readable at ``dest`` in scratch: a symbolic link on a shared filesystem, else a copy.

    A link costs nothing and the job only reads inputs; copying would double the I/O
    of every job on a shared filesystem.
    """
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not src.exists():
        raise FileNotFoundError(f"input file {src} does not exist")
    try:
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        os.symlink(src.resolve(), dest)
    except OSError:
        import shutil  # only where links cannot be made: every job pays for what it imports

        shutil.copyfile(src, dest)


def file_matches(path: str | Path, size: int, checksum: str | None = None) -> bool:
    """True if ``path`` exists with ``size`` bytes (and ``checksum``, when given)."""
    try:
        if os.stat(path).st_size != size:
            return False
    except OSError:
        return False
    return checksum is None or checksum_file(path) == checksum


def verify_input(path: str | Path, size: int | None, checksum: str | None) -> str | None:
    """What is wrong with a staged-in input compared with its registration, or `None` if nothing.

    The size is compared first (one ``stat``, and most damage - a truncated copy, a file
    replaced by another - changes it); then the checksum, which reads the file once: the
    task reads it anyway, so a job pays one extra read of its inputs (mostly from the page
    cache) to turn a corrupted input into a clear error instead of a failure deep inside
    the task's reader.
    """
    try:
        actual = os.stat(path).st_size
    except OSError as err:
        return f"cannot read it ({err.strerror})"
    if size is not None and actual != size:
        return f"it has {actual} bytes, registered {size}"
    if checksum is not None and checksum_file(path) != checksum:
        return f"its checksum is not the registered {checksum}"
    return None


def read_input_checks(path: str | Path | None) -> dict[str, tuple[int | None, str | None]]:
    """``{lfn: (size, checksum)}`` from an ``--input-checks`` file written by ``bps prepare``.

    Raises
    ------
    ValueError
        If the file is not such a file (the message names it).
    """
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"input checks file {path} is unreadable ({err}); prepare the submit directory again"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, list) and len(v) == 2 for v in data.values()):
        raise ValueError(f"input checks file {path}: expected an object {{lfn: [size, checksum]}}")
    return {str(lfn): (size, checksum) for lfn, (size, checksum) in data.items()}


def tombstone_text(dataset_type: str, data_id: dict[str, Any], reason: str) -> bytes:
    """The content of a tombstone: the magic line, then one JSON line saying what is missing and why."""
    body = {"dataset_type": dataset_type, "data_id": data_id, "reason": reason}
    return TOMBSTONE_MAGIC + json.dumps(body, sort_keys=True, default=str).encode() + b"\n"


def write_tombstone(
    path: str | Path, dataset_type: str, data_id: dict[str, Any], reason: str
) -> tuple[int, str]:
    """Atomically write a tombstone at ``path`` (where the output would have gone); return size and checksum.

    Written like an output (temporary name, then rename), so a reader sees either no
    file or a whole tombstone.
    """
    path = Path(path)
    text = tombstone_text(dataset_type, data_id, reason)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    atomic_write_bytes(path, text)
    h = _hasher()
    h.update(text)
    return len(text), h.hexdigest()


def is_tombstone(path: str | Path) -> bool:
    """True if the file at ``path`` is a tombstone (reads only its first bytes; False if absent)."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(TOMBSTONE_MAGIC)) == TOMBSTONE_MAGIC
    except OSError:
        return False


def read_tombstone(path: str | Path) -> dict[str, Any]:
    """What a tombstone says: ``dataset_type``, ``data_id``, ``reason``.

    Raises
    ------
    ValueError
        If ``path`` is not a tombstone.
    """
    raw = Path(path).read_bytes()
    if not raw.startswith(TOMBSTONE_MAGIC):
        raise ValueError(f"{path} is not a no-work tombstone")
    body: dict[str, Any] = json.loads(raw[len(TOMBSTONE_MAGIC) :])
    return body


#: separates the owner's identity in a scratch directory's name (never in a job name or host name)
_OWNER_SEP = "~"


def make_scratch(base: str | None, job: str) -> Path:
    """A fresh scratch directory for one attempt: ``--scratch``, else ``$_CONDOR_SCRATCH_DIR``, else tmp.

    Each attempt gets its own directory, so a retry never reads a killed attempt's files.
    Its name carries its owner (host, boot id, pid, process start time): a killed job
    cannot remove its own directory, so each new one first removes those of the same
    base whose owner is dead (`remove_stale_scratch`).
    """
    root = base or os.environ.get("_CONDOR_SCRATCH_DIR") or None
    if root is not None:
        Path(root).mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(root if root is not None else default_temp_dir())
    owner = _OWNER_SEP.join(_owner_identity())
    return Path(new_directory(root, f"bps-{job[:40]}{_OWNER_SEP}{owner}{_OWNER_SEP}"))


def remove_stale_scratch(base: str | Path) -> list[Path]:
    """Remove the scratch directories under ``base`` whose owning job is dead; return them.

    Only directories named by `make_scratch` are considered, and one is removed only
    when its owner is provably dead: same host and the machine rebooted since, or no
    process with its pid and start time. A directory of another host (a shared scratch
    filesystem) or of a live job is never touched; neither are the untagged names of
    older versions, whose owner cannot be known.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    me = _owner_identity()
    for entry in entries:
        if not entry.name.startswith("bps-") or _OWNER_SEP not in entry.name:
            continue
        parts = entry.name.split(_OWNER_SEP)
        if len(parts) != 6:  # job, host, boot, pid, start, random suffix
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        _, host, boot, pid, start, _ = parts
        if _owner_dead(me, host, boot, pid, start):
            remove_tree(entry.path)
            removed.append(Path(entry.path))
    return removed


def _owner_identity(pid: int | None = None) -> tuple[str, str, str, str]:
    """``(host, boot id, pid, start time)`` of a process (this one by default)."""
    pid = os.getpid() if pid is None else pid
    host = os.uname().nodename.replace(_OWNER_SEP, "_").replace("/", "_") or "host"
    return host, _boot_id(), str(pid), _start_time(pid) or "0"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:  # not Linux: pids alone tell liveness
        return "0"


def _start_time(pid: int | str) -> str | None:
    """A process's start time (clock ticks after boot, Linux), '' where unknown, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_dead(me: tuple[str, str, str, str], host: str, boot: str, pid: str, start: str) -> bool:
    if host != me[0] or not pid.isdigit():
        return False  # another machine's directory: its jobs are not ours to judge
    if boot != me[1]:
        return True  # the machine rebooted: every process of the earlier boot is gone
    if pid == me[2]:
        return False
    if Path("/proc/self/stat").exists():
        now = _start_time(pid)
        return now is None or (now != "" and start != "0" and now != start)  # gone, or pid reused
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _remove_orphans(dest: Path) -> None:
    """Remove temporary files that killed attempts left beside ``dest`` (``<name>.bps-tmp-*``).

    A prefix test over one directory listing: ``Path.glob`` would compile a pattern into
    a regular expression first, in every job, for every output.
    """
    prefix = dest.name + _TMP_MARK
    try:
        entries = [e.path for e in os.scandir(dest.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for orphan in entries:
        _unlink_quietly(orphan)


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
