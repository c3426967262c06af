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

from ...submit_files import submit_file

#: The format version the documents declare (what ``Pegasus.api`` 5.x writes and 5.1.2 plans).
PEGASUS_VERSION = "5.0.4"

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: A value as the documents write it: compact JSON, non-ASCII kept.
encode = _encode


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
    """Write ``chunks`` to a temporary name and rename it: ``pegasus-plan`` never reads half a
    file. Not synced, as every file of a submit directory (`bps.submit_files`)."""
    with submit_file(path) as out:
        out.writelines(chunks)


def compact(document: dict[str, Any]) -> str:
    """A document as one line of compact JSON."""
    return _encode(document) + "\n"


def _stream(
    head: dict[str, Any], lists: list[tuple[str, Iterable[Any]]], encoded: bool = False
) -> Iterator[str]:
    """``head``'s keys, then each ``(key, items)`` as a JSON list encoded one item at a time.

    With ``encoded``, each list's items come already encoded, in chunks (see `encoded_list`).
    """
    text = _encode(head)
    yield text[:-1]
    first = text == "{}"
    for key, items in lists:
        yield ("" if first else ",") + _encode(key) + ":["
        first = False
        if encoded:
            yield from _joined(items)
        else:
            for i, item in enumerate(items):
                yield ("," if i else "") + _encode(item)
        yield "]"
    yield "}\n"


def _joined(chunks: Iterable[str]) -> Iterator[str]:
    """Chunks of comma-separated items, with the commas between chunks (empty chunks skipped)."""
    first = True
    for chunk in chunks:
        if chunk:
            yield chunk if first else "," + chunk
            first = False


def encoded_list(chunks: Iterable[str]) -> list[Any]:
    """The items of chunks of encoded items (each chunk: items joined by commas), decoded."""
    decoded: list[Any] = json.loads("[" + "".join(_joined(chunks)) + "]")
    return decoded


@dataclass
class WorkflowDocument:
    """A workflow whose jobs and dependencies are produced when written, never held at once.

    ``jobs`` and ``dependencies`` are called once per writing (or `document`): each
    returns an iterable of job documents and of ``(parent id, sorted child ids)``. With
    ``encoded``, they return chunks of JSON text instead: the job documents and the
    ``{"id": parent, "children": [...]}`` items, already encoded and joined by commas, a
    run of items per chunk (the streamed translator writes large chunks, no object per job).
    """

    name: str
    metadata: dict[str, str]
    jobs: Callable[[], Iterable[Any]]
    dependencies: Callable[[], Iterable[Any]]
    encoded: bool = False

    def _head(self) -> dict[str, Any]:
        head: dict[str, Any] = {**header(), "pegasus": PEGASUS_VERSION, "name": self.name}
        if self.metadata:
            head["metadata"] = self.metadata
        return head

    def _dependency_items(self) -> Iterable[Any]:
        if self.encoded:
            return self.dependencies()
        return ({"id": parent, "children": children} for parent, children in self.dependencies())

    def document(self) -> dict[str, Any]:
        """The whole document in memory (small workflows, tests)."""
        doc = self._head()
        if self.encoded:
            doc["jobs"] = encoded_list(self.jobs())
            doc["jobDependencies"] = encoded_list(self._dependency_items())
        else:
            doc["jobs"] = list(self.jobs())
            doc["jobDependencies"] = list(self._dependency_items())
        return doc

    def write(self, path: Path) -> None:
        lists = [("jobs", self.jobs()), ("jobDependencies", self._dependency_items())]
        atomic_write(path, _stream(self._head(), lists, self.encoded))


@dataclass
class ReplicaDocument:
    """A replica catalog: ``base`` replicas produced when written, then those added one by one.

    ``base`` yields ``(site, lfn, pfn)`` with each lfn once; a replica added for an lfn
    already listed joins that entry's ``pfns``, as ``ReplicaCatalog.add_replica`` does.
    ``encoded``, when given, replaces ``base``: called with a copy of the added replicas, it
    yields chunks of encoded entries (joined by commas), and takes out of that copy (`merge`)
    the added replicas of each lfn it lists.
    """

    base: Callable[[], Iterable[tuple[str, str, str]]] = lambda: ()
    added: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    encoded: Callable[[dict[str, list[dict[str, str]]]], Iterable[str]] | None = None

    def add_replica(self, site: str, lfn: str, pfn: str) -> None:
        pfns = self.added.setdefault(lfn, [])
        entry = {"site": site, "pfn": pfn}
        if entry not in pfns:
            pfns.append(entry)

    def _replicas(self) -> Iterator[dict[str, Any]]:
        added = dict(self.added)
        for site, lfn, pfn in self.base():
            yield merge(site, lfn, pfn, added)
        for lfn, pfns in added.items():
            yield {"lfn": lfn, "pfns": pfns}

    def _encoded(self) -> Iterator[str]:
        assert self.encoded is not None
        added = dict(self.added)
        yield from self.encoded(added)
        yield ",".join(_encode({"lfn": lfn, "pfns": pfns}) for lfn, pfns in added.items())

    def document(self) -> dict[str, Any]:
        """The whole document in memory (small workflows, tests)."""
        replicas = encoded_list(self._encoded()) if self.encoded else list(self._replicas())
        return {**header(), "pegasus": PEGASUS_VERSION, "replicas": replicas}

    def write(self, path: Path) -> None:
        head = {**header(), "pegasus": PEGASUS_VERSION}
        if self.encoded:
            atomic_write(path, _stream(head, [("replicas", self._encoded())], encoded=True))
        else:
            atomic_write(path, _stream(head, [("replicas", self._replicas())]))


def merge(site: str, lfn: str, pfn: str, added: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """The entry of replica ``(site, lfn, pfn)`` with the replicas added for ``lfn`` (taken out of ``added``)."""
    pfns = [{"site": site, "pfn": pfn}]
    pfns += [extra for extra in added.pop(lfn, ()) if extra != pfns[0]]
    return {"lfn": lfn, "pfns": pfns}
