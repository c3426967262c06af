"""Names that must be safe everywhere: DAG nodes, file names, Pegasus ids, logical file names.

A module of its own because every batch job needs `dataset_lfn` to find its staged
files, and importing it from `bps.workflow` (the workflow dataclasses) would cost
every job the import of the whole workflow model. Standard library only.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from supertask.template_rows import escape_literal, plain_rows

__all__ = ["dataset_lfn", "lfn_formatter", "lfns_formatter", "safe_name", "safe_names"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """Make ``text`` safe as a DAG node name, file name or Pegasus id."""
    return _UNSAFE.sub("_", text).strip("_") or "_"


def safe_names(texts: Iterable[str]) -> list[str]:
    """`safe_name` of each of ``texts``, worked out in C (no Python call per text): the DAG
    node names of a million jobs."""
    names = list(map(str.strip, map(functools.partial(_UNSAFE.sub, "_"), texts), itertools.repeat("_")))
    return [name or "_" for name in names] if "" in names else names


def dataset_lfn(dataset_type: str, data_id: dict[str, Any]) -> str:
    """The logical file name of a dataset: stable, unique within a workflow, file-name safe.

    ``calexp`` with ``{instrument: DemoCam, visit: 3, detector: 1}`` becomes
    ``calexp.detector-1.instrument-DemoCam.visit-3``. Within one workflow a
    (dataset type, data ID) pair names one dataset, so the name is unique.
    """
    parts = [_safe_part(dataset_type)] + [_safe_part(f"{k}-{data_id[k]}") for k in sorted(data_id)]
    # Every part is safe already, so the outer safe_name only strips the ends.
    return ".".join(parts).strip("_") or "_"


def lfn_formatter(dataset_type: str, keys: tuple[str, ...]) -> Callable[[tuple[Any, ...]], str]:
    """``lfn(values)``: the `dataset_lfn` of a ``dataset_type`` dataset whose data ID has
    ``keys`` and ``values`` (in that order).

    The type's part and the sorted order of the keys are worked out once: a streamed
    ``bps prepare`` names millions of datasets of a few (type, keys) pairs.
    """
    head = _safe_part(dataset_type)
    # (key text, position, whether "key-<int>" is safe as it stands) in sorted key order:
    # the text of an int is digits and "-", which `safe_name` keeps
    fields = [
        (f"{k}-", i, _safe_part(f"{k}-0") == f"{k}-0") for k, i in sorted((k, i) for i, k in enumerate(keys))
    ]
    width = len(keys)

    def lfn(values: tuple[Any, ...]) -> str:
        if len(values) != width:
            raise ValueError(f"{dataset_type} data ID values {values!r} do not match keys {keys}")
        parts = [head]
        for k, i, plain in fields:
            v = values[i]
            parts.append(k + str(v) if plain and type(v) is int else _safe_part(f"{k}{v}"))
        return ".".join(parts).strip("_") or "_"

    return lfn


def lfns_formatter(
    dataset_type: str, keys: tuple[str, ...]
) -> Callable[[Sequence[tuple[Any, ...]]], list[str]]:
    """``lfns(rows)``: ``[lfn(values) for values in rows]`` with ``lfn = lfn_formatter(dataset_type, keys)``.

    Many names at once, each by one `str.format` run in C (`itertools.starmap`) when every
    value of the rows is an int or a str that a name keeps as it is (the common case: unit
    names, instrument names): a per-name Python call is most of the cost of naming a
    million datasets. Other rows are named one by one, by ``lfn``.
    """
    one = lfn_formatter(dataset_type, keys)
    head = _safe_part(dataset_type)
    width = len(keys)
    fields = sorted((f"{k}-", i) for i, k in enumerate(keys))
    # a safe key prefix keeps an int's text as it is; the head keeps the ends free of "_"
    fast = head != "_" and all(_safe_part(f"{k}0") == f"{k}0" for k, _ in fields)
    template = escape_literal(head) + "".join(f".{escape_literal(k)}{{{i}}}" for k, i in fields)

    def lfns(rows: Sequence[tuple[Any, ...]]) -> list[str]:
        if not fast or not plain_rows(rows, width, _kept_as_is):
            return list(map(one, rows))
        return list(itertools.starmap(template.format, rows))

    return lfns


def _kept_as_is(value: str) -> bool:
    """Whether a name's part keeps ``value`` as it is after a safe key prefix (safe characters,
    not ending in "_")."""
    return not (_UNSAFE.search(value) or value.endswith("_"))


@functools.lru_cache(maxsize=1 << 16)
def _safe_part(text: str) -> str:
    """`safe_name` of one part of a logical file name; cached, since a workflow's 10^6 names
    share a few thousand parts (``instrument-X``, ``detector-N``, ``visit-N``...)."""
    return safe_name(text)
