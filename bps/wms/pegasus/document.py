"""Pegasus 5's abstract-workflow and replica-catalog formats, written directly and streamed.

Pegasus documents its YAML formats as JSON Schemas (``wf-5.0.yml``, ``rc-5.0.yml``; the
tests validate every written file against them). JSON is YAML, and ``pegasus-plan``
reads compact JSON as such. The ``Pegasus.api`` classes build a document as one object
per job, file and profile and serialise it in one piece: for 10^5 jobs its YAML writer
alone takes about 50 s, and at 10^6 the objects alone would not fit the memory a prepare
may use. The two documents that grow with the workflow (the compute workflow and the
replica catalog) are therefore written here, one job or replica at a time from the
generic workflow, with the keys, order and omissions of the API's own output; the small
documents (root workflow, site and transformation catalogs) are still built with the
public ``Pegasus.api`` and read back through its public ``write``.

Document layout (``x-pegasus`` header first, as the API writes it):

- workflow: ``pegasus``, ``name``, ``metadata``, ``jobs`` (``type``, ``name``, ``id``,
  ``nodeLabel``, ``arguments``, ``uses`` sorted by ``lfn``, ``profiles`` sorted by
  namespace), ``jobDependencies`` (``id`` of a parent, its ``children`` sorted);
- replica catalog: ``pegasus``, ``replicas`` (``lfn``, ``pfns`` of ``site`` and ``pfn``).
"""

from __future__ import annotations

import getpass
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from supertask.atomic_write import atomic_open

#: The format version the documents declare (what ``Pegasus.api`` 5.x writes and 5.1.2 plans).
PEGASUS_VERSION = "5.0.4"

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def header() -> dict[str, Any]:
    """The ``x-pegasus`` header every document starts with (who wrote it and when)."""
    return {
        "x-pegasus": {
            "createdBy": getpass.getuser(),
            "createdOn": datetime.now().strftime(r"%m-%d-%yT%H:%M:%SZ"),
            "apiLang": "python",
        }
    }


def api_document(obj: Any) -> dict[str, Any]:
    """The document of a ``Pegasus.api`` workflow or catalog, through its public ``write``."""
    buffer = io.StringIO()
    obj.write(buffer, _format="json")
    document: dict[str, Any] = json.loads(buffer.getvalue())
    return document


def atomic_write(path: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to a temporary name and rename it: ``pegasus-plan`` never reads half a file."""
    with atomic_open(path, "w", buffering=1 << 20) as out:
        out.writelines(chunks)


def compact(document: dict[str, Any]) -> str:
    """A document as one line of compact JSON."""
    return _encode(document) + "\n"


def _stream(head: dict[str, Any], lists: list[tuple[str, Iterable[Any]]]) -> Iterator[str]:
    """``head``'s keys, then each ``(key, items)`` as a JSON list encoded one item at a time."""
    text = _encode(head)
    yield text[:-1]
    first = text == "{}"
    for key, items in lists:
        yield ("" if first else ",") + _encode(key) + ":["
        first = False
        for i, item in enumerate(items):
            yield ("," if i else "") + _encode(item)
        yield "]"
    yield "}\n"


@dataclass
class WorkflowDocument:
    """A workflow whose jobs and dependencies are produced when written, never held at once.

    ``jobs`` and ``dependencies`` are called once per writing (or `document`): each
    returns an iterable of job documents and of ``(parent id, sorted child ids)``.
    """

    name: str
    metadata: dict[str, str]
    jobs: Callable[[], Iterable[dict[str, Any]]]
    dependencies: Callable[[], Iterable[tuple[str, list[str]]]]

    def _head(self) -> dict[str, Any]:
        head: dict[str, Any] = {**header(), "pegasus": PEGASUS_VERSION, "name": self.name}
        if self.metadata:
            head["metadata"] = self.metadata
        return head

    def _dependency_items(self) -> Iterator[dict[str, Any]]:
        for parent, children in self.dependencies():
            yield {"id": parent, "children": children}

    def document(self) -> dict[str, Any]:
        """The whole document in memory (small workflows, tests)."""
        doc = self._head()
        doc["jobs"] = list(self.jobs())
        doc["jobDependencies"] = list(self._dependency_items())
        return doc

    def write(self, path: Path) -> None:
        atomic_write(
            path,
            _stream(self._head(), [("jobs", self.jobs()), ("jobDependencies", self._dependency_items())]),
        )


@dataclass
class ReplicaDocument:
    """A replica catalog: ``base`` replicas produced when written, then those added one by one.

    ``base`` yields ``(site, lfn, pfn)`` with each lfn once; a replica added for an lfn
    already listed joins that entry's ``pfns``, as ``ReplicaCatalog.add_replica`` does.
    """

    base: Callable[[], Iterable[tuple[str, str, str]]] = lambda: ()
    added: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def add_replica(self, site: str, lfn: str, pfn: str) -> None:
        pfns = self.added.setdefault(lfn, [])
        entry = {"site": site, "pfn": pfn}
        if entry not in pfns:
            pfns.append(entry)

    def _replicas(self) -> Iterator[dict[str, Any]]:
        added = dict(self.added)
        for site, lfn, pfn in self.base():
            pfns = [{"site": site, "pfn": pfn}]
            pfns += [extra for extra in added.pop(lfn, ()) if extra != pfns[0]]
            yield {"lfn": lfn, "pfns": pfns}
        for lfn, pfns in added.items():
            yield {"lfn": lfn, "pfns": pfns}

    def document(self) -> dict[str, Any]:
        """The whole document in memory (small workflows, tests)."""
        return {**header(), "pegasus": PEGASUS_VERSION, "replicas": list(self._replicas())}

    def write(self, path: Path) -> None:
        atomic_write(
            path, _stream({**header(), "pegasus": PEGASUS_VERSION}, [("replicas", self._replicas())])
        )
