"""Graph slices: a file holding some quanta of a ``.qgraph`` file, read by quantum id.

A batch job that has its files shipped to it (HTCondor file transfer, Pegasus staging)
needs its own quanta, the pipeline and configs (the header) and the tables and
dictionary that decode a record, nothing else. A slice holds exactly that for many jobs:
the graph's header, tables and dictionary, and the records of the quanta it was given,
all copied byte for byte (records keep their digests, which bind the quantum id), then a
table of ``(quantum id, start, end)`` sorted by id. A job seeks to that table, finds its
ids by bisection and reads its records only.

The writer is sequential (`SliceWriter.add` appends the records as jobs are iterated)
and holds only the current slice's id table. Readers are the graph file's own:
`supertask.graph.file_format.read_header` / ``read_quanta`` recognise a slice by its
magic, so ``QuantumGraph.readHeader`` / ``loadQuanta`` read a slice as they read a graph.
See ``docs/graph-file.md`` for the layout.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_left
from typing import Any

from . import file_format as ff

__all__ = ("SLICE_MAGIC", "SLICE_FORMAT_VERSION", "GraphRecords", "SliceWriter", "SliceLayout")

SLICE_MAGIC = ff._SLICE_MAGIC
SLICE_FORMAT_VERSION = (1, 0)
# n_records, file_length, header (offset, length), tables (offset, length), dictionary length,
# records offset, id-table offset; digests of header, tables + dictionary, id table
_SLICE_BODY = struct.Struct("<QQQQQQQQQ8s8s8s")
_SLICE_PREAMBLE_SIZE = ff._LEAD.size + _SLICE_BODY.size + 8
_ENTRY = struct.Struct("<QQQ")


class GraphRecords:
    """A ``.qgraph`` file opened for copying: its header, tables, dictionary and raw records.

    Each record is checked against its digest while it is copied, so a corrupted graph
    is reported at prepare time, not by a job on a worker.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.file, self.layout = ff._open(path)
        if not isinstance(self.layout, ff._Layout):
            self.file.close()
            raise ff.GraphFileError(f"{os.fspath(path)} is a graph slice already; slice the whole graph file")
        layout = self.layout
        self.header_bytes = ff._read_at(self.file, *layout.header)
        if ff._digest(self.header_bytes) != layout.header_digest:
            raise layout.error("the header checksum does not match; the header is corrupted")
        tables_offset, tables_length = layout.tables
        blob = ff._read_at(self.file, tables_offset, tables_length + layout.dictionary[1])
        if ff._digest(blob) != layout.tables_digest:
            raise layout.error("the checksum of the dataset-type tables and dictionary does not match")
        self.tables_bytes, self.dictionary = blob[:tables_length], blob[tables_length:]

    def record(self, id: int) -> bytes:
        """The raw record of quantum ``id`` (digest and zstd frame), its digest checked."""
        layout = self.layout
        ff._check_id(layout, id)
        start, end = ff._TWO_OFFSETS.unpack(ff._read_at(self.file, layout.index_offset + 8 * id, 16))
        ff._record_span(layout, start, end, id)
        blob = ff._read_at(self.file, start, end - start)
        if ff._record_digest(id, blob[ff._DIGEST_SIZE :]) != blob[: ff._DIGEST_SIZE]:
            raise layout.error(f"the checksum of quantum {id}'s record does not match; slice a sound graph")
        return blob

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> GraphRecords:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SliceWriter:
    """Write one slice: `add` the quanta in any order, then `close` (renames it into place).

    The file is written under a temporary name and renamed by `close`; it is not
    synced (``bps prepare`` writes it before anything is submitted: a crash means
    preparing again).
    """

    def __init__(self, path: str | os.PathLike[str], source: GraphRecords):
        self.path = os.fspath(path)
        self._tmp = f"{self.path}.tmp{os.getpid()}"
        self._source = source
        self._entries: list[tuple[int, int, int]] = []
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(b"\0" * _SLICE_PREAMBLE_SIZE)
        self._header = (self._file.tell(), len(source.header_bytes))
        self._file.write(source.header_bytes)
        self._tables = (self._file.tell(), len(source.tables_bytes))
        self._file.write(source.tables_bytes)
        self._file.write(source.dictionary)
        self._records_offset = self._file.tell()
        self._position = self._records_offset

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, id: int) -> None:
        """Append the record of quantum ``id`` (copied from the graph)."""
        blob = self._source.record(id)
        self._file.write(blob)
        self._entries.append((id, self._position, self._position + len(blob)))
        self._position += len(blob)

    def close(self) -> str:
        """Write the id table and the preamble, rename the file into place; return its path."""
        try:
            self._entries.sort()
            ids = [entry[0] for entry in self._entries]
            if len(set(ids)) != len(ids):
                raise ValueError(f"slice {self.path}: a quantum was added twice")
            table = b"".join(_ENTRY.pack(*entry) for entry in self._entries)
            table_offset = self._position
            self._file.write(table)
            source = self._source
            body = _SLICE_BODY.pack(
                len(self._entries),
                table_offset + len(table),
                *self._header,
                *self._tables,
                len(source.dictionary),
                self._records_offset,
                table_offset,
                ff._digest(source.header_bytes),
                ff._digest(source.tables_bytes, source.dictionary),
                ff._digest(table),
            )
            major, minor = SLICE_FORMAT_VERSION
            lead = ff._LEAD.pack(SLICE_MAGIC, major, minor, ff._lead_check(SLICE_MAGIC, major, minor))
            self._file.seek(0)
            self._file.write(lead + body + ff._digest(lead, body))
            self._file.close()
            os.chmod(self._tmp, 0o644)  # jobs running as another user read it
            os.replace(self._tmp, self.path)
        except BaseException:
            self._file.close()
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)
            raise
        return self.path


class SliceLayout:
    """The validated preamble of an open slice: what `file_format`'s readers need of it."""

    __slots__ = (
        "path",
        "major",
        "minor",
        "n",
        "header",
        "tables",
        "dictionary",
        "records_offset",
        "table_offset",
        "header_digest",
        "tables_digest",
        "table_digest",
        "_ids",
    )
    n: int
    records_offset: int
    table_offset: int

    def __init__(self, path: str, f: Any):
        self.path = path
        size = os.fstat(f.fileno()).st_size
        raw = f.read(_SLICE_PREAMBLE_SIZE)
        if len(raw) < _SLICE_PREAMBLE_SIZE:
            raise self.error(
                f"truncated: {size} bytes, shorter than its {_SLICE_PREAMBLE_SIZE}-byte preamble"
            )
        magic, major, minor, check = ff._LEAD.unpack_from(raw)
        if check != ff._lead_check(magic, major, minor):
            raise self.error("the format-version bytes are corrupted; the slice cannot be trusted")
        if major != SLICE_FORMAT_VERSION[0]:
            raise self.error(
                f"graph slice format {major}.{minor}; this reader reads only major version "
                f"{SLICE_FORMAT_VERSION[0]}: prepare the workflow again with this version"
            )
        self.major, self.minor = major, minor
        body = raw[ff._LEAD.size : ff._LEAD.size + _SLICE_BODY.size]
        if raw[-8:] != ff._digest(raw[: ff._LEAD.size], body):
            raise self.error("the preamble checksum does not match; the slice is corrupted")
        (
            self.n,
            file_length,
            header_offset,
            header_length,
            tables_offset,
            tables_length,
            dict_length,
            self.records_offset,
            self.table_offset,
            self.header_digest,
            self.tables_digest,
            self.table_digest,
        ) = _SLICE_BODY.unpack(body)
        if size != file_length:
            what = "truncated" if size < file_length else "longer than written (appended to)"
            raise self.error(f"{what}: it has {size} bytes, its preamble says {file_length}")
        self.header = (header_offset, header_length)
        self.tables = (tables_offset, tables_length)
        self.dictionary = (tables_offset + tables_length, dict_length)
        if not (
            _SLICE_PREAMBLE_SIZE <= header_offset
            and header_offset + header_length == tables_offset
            and tables_offset + tables_length + dict_length == self.records_offset
            and self.records_offset <= self.table_offset
            and self.table_offset + _ENTRY.size * self.n == file_length
        ):
            raise self.error("the section offsets in the preamble are inconsistent")
        self._ids: list[int] | None = None

    def error(self, what: str) -> ff.GraphFileError:
        return ff.GraphFileError(f"{self.path}: {what}")

    def _table(self, f: Any) -> list[tuple[int, int, int]]:
        data = ff._read_at(f, self.table_offset, _ENTRY.size * self.n)
        if ff._digest(data) != self.table_digest:
            raise self.error("the checksum of the quantum-id table does not match; the slice is corrupted")
        return list(_ENTRY.iter_unpack(data))

    def ids(self, f: Any) -> list[int]:
        """Every quantum id the slice holds, ascending."""
        return [entry[0] for entry in self._table(f)]

    def span(self, f: Any, id: int) -> tuple[int, int]:
        """``(start, end)`` of quantum ``id``'s record, found by bisection over the id table.

        Reads ``log2(n)`` table entries, not the table: a job of a large slice reads
        little more than its own records. An altered entry is caught by the record's
        digest, which binds the id.
        """
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"quantum id must be an int, not {type(id).__name__}")
        entries = _LazyIds(f, self)
        i = bisect_left(entries, id)
        if i == self.n or entries[i] != id:
            raise IndexError(f"no quantum {id} in graph slice {self.path}: it holds {self.n} other quanta")
        _, start, end = _ENTRY.unpack(ff._read_at(f, self.table_offset + _ENTRY.size * i, _ENTRY.size))
        if not self.records_offset <= start < end <= self.table_offset:
            raise self.error(f"the table entry of quantum {id} is corrupted (offsets {start}..{end})")
        return start, end


class _LazyIds:
    """The id column of a slice's table as a sequence, reading one entry per look-up (for bisect)."""

    def __init__(self, f: Any, layout: SliceLayout):
        self.f, self.layout = f, layout

    def __len__(self) -> int:
        return self.layout.n

    def __getitem__(self, i: int) -> int:
        offset = self.layout.table_offset + _ENTRY.size * i
        id: int = struct.unpack("<Q", ff._read_at(self.f, offset, 8))[0]
        return id
