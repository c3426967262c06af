"""Compare two submit directories written by ``bps prepare``: byte for byte, but for time stamps.

A change that makes ``bps prepare`` faster must not change what it writes. Prepare the same
graph with the same configuration *and the same submit directory path* (paths appear in
the files) with the code before and after the change, moving the first directory aside
(``bench_bps_prepare.py --submit-dir DIR``), then::

    .venv/bin/python benchmarks/compare_submit_dirs.py BEFORE AFTER [--replace OLD NEW]

``--replace OLD NEW`` compares directories prepared at two paths: ``OLD`` in BEFORE's
files and link targets reads as ``NEW`` (e.g. the two submit directory names). Files, directories and symbolic links must be the same;
file contents must be the same bytes, except for the values that record when prepare ran:
``prepared_at`` of ``run_record.json`` and ``createdOn`` of the Pegasus documents'
``x-pegasus`` header. ``workflow.json`` files that differ as bytes are compared by what they
hold: both loaded (`bps.workflow_io.load_workflow`, which reads every format), the two
workflows must be equal field by field, so that a change of the file's format is checked
against the workflow the earlier format held. Exits 0 when identical, 1 with the differences
otherwise.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

#: Values that differ between two runs of the same prepare: when it ran.
_VOLATILE = [
    (re.compile(rb'"prepared_at": [0-9.e+-]+'), b'"prepared_at": 0'),
    (re.compile(rb'"createdOn":"[^"]*"'), b'"createdOn":""'),
    (re.compile(rb'"createdOn": "[^"]*"'), b'"createdOn": ""'),
]


def _entries(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))}


def _normalise(data: bytes, replace: tuple[bytes, bytes] | None = None) -> bytes:
    if replace:
        data = data.replace(*replace)
    for pattern, replacement in _VOLATILE:
        data = pattern.sub(replacement, data)
    return data


def _workflow_text(path: Path) -> bytes:
    """The workflow a ``workflow.json`` holds, as canonical JSON (any format)."""
    import json

    from bps.workflow_io import load_workflow, workflow_to_json

    return json.dumps(workflow_to_json(load_workflow(path)), sort_keys=True).encode()


def compare(before: Path, after: Path, replace: tuple[str, str] | None = None) -> list[str]:
    """Every difference between the two directories, as one line each (empty when identical)."""
    a, b = _entries(before), _entries(after)
    swap = (replace[0].encode(), replace[1].encode()) if replace else None
    problems = [f"only in {before}: {name}" for name in sorted(a.keys() - b.keys())]
    problems += [f"only in {after}: {name}" for name in sorted(b.keys() - a.keys())]
    for name in sorted(a.keys() & b.keys()):
        pa, pb = a[name], b[name]
        if pa.is_symlink() or pb.is_symlink():
            target = str(pa.readlink()).replace(*replace) if replace and pa.is_symlink() else None
            if not (pa.is_symlink() and pb.is_symlink()) or (target or str(pa.readlink())) != str(
                pb.readlink()
            ):
                problems.append(f"symbolic links differ: {name}")
        elif pa.is_dir() != pb.is_dir():
            problems.append(f"file against directory: {name}")
        elif pa.is_file():
            da, db = pa.read_bytes(), pb.read_bytes()
            if da != db and pa.name == "workflow.json":
                da, db = _workflow_text(pa), _workflow_text(pb)
            if da != db and _normalise(da, swap) != _normalise(db):
                na, nb = _normalise(da, swap), _normalise(db)
                at = next(
                    (i for i, (x, y) in enumerate(zip(na, nb, strict=False)) if x != y), min(len(na), len(nb))
                )
                problems.append(
                    f"contents differ: {name} ({len(da)} and {len(db)} bytes; first difference at byte {at}: "
                    f"{na[max(at - 40, 0) : at + 40]!r} against {nb[max(at - 40, 0) : at + 40]!r})"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--replace", nargs=2, metavar=("OLD", "NEW"), help="read OLD in BEFORE as NEW")
    args = parser.parse_args(argv)
    for d in (args.before, args.after):
        if not d.is_dir():
            print(f"compare_submit_dirs: {d} is not a directory: pass two prepared submit directories")
            return 2
    problems = compare(args.before, args.after, tuple(args.replace) if args.replace else None)
    files = sum(1 for p in args.before.rglob("*") if p.is_file())
    if problems:
        print("\n".join(problems))
        print(f"{len(problems)} differences between {args.before} and {args.after}")
        return 1
    print(f"identical: {args.before} and {args.after} ({files} files, time stamps aside)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
