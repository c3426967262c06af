"""The ``.qgraph`` file: a whole `QuantumGraph`, or any one quantum, from one file.

Why this layout
---------------
Every batch job reads its quantum from the shared graph file, so reading one quantum
must cost the same for a graph of ten quanta as for one of a million. The file starts
with a fixed-size binary *preamble* that gives the offsets of every section; the
*index* is a fixed-width table of record offsets, so a job seeks straight to the two
offsets it needs instead of parsing the index. Records are compressed one by one with
a zstd dictionary trained on a sample of them (records are small and alike, which is
exactly what a dictionary is for) and stored as pickles of plain tuples (see
`record_codec`), so any later version of the software can read them.

Nothing is unpickled before its checksum has been checked, and the unpickler refuses
any pickle that names a class or function, so a corrupted or hostile file cannot run
code. See ``docs/graph-file.md`` for the byte layout and the versioning policy.

This module is on the start-up path of every batch job: it imports only the standard
library, ``zstandard``'s C backend (`supertask.graph.zstd_import`) and the light handle
modules.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence

try:  # the built-in module behind hashlib.blake2b; importing it alone skips OpenSSL (~2 ms per job)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - other Python implementations
    from hashlib import blake2b
from typing import TYPE_CHECKING, Any, TypeVar, cast

try:  # the C pickle module, the one pickle.py re-exports: importing it alone skips pickle.py (~2 ms per job);
    # it has Pickler, Unpickler, dumps, loads and the errors, not the *_PROTOCOL constants
    import _pickle as pickle
except ImportError:  # pragma: no cover - other Python implementations
    import pickle  # type: ignore[no-redef]

from ..atomic_write import atomic_open
from ..gc_pause import gc_paused
from ..quantum import Quantum
from .record_codec import PlainQuantum, RecordDecoder, RecordEncoder, Tables
from .zstd_import import import_zstandard

if TYPE_CHECKING:
    import zstandard
else:  # the C backend: its classes and train_dictionary, not zstandard.open/compress/decompress
    zstandard = import_zstandard()

__all__ = (
    "FORMAT_VERSION",
    "GraphFileError",
    "RecordStream",
    "iter_quanta",
    "iter_records",
    "read_header",
    "read_quanta",
    "read_quantum",
    "write_graph",
)

MAGIC = b"\x89QGRAPH\n"
#: the magic of a graph slice (`supertask.graph.slice_file`), which these readers read too
_SLICE_MAGIC = b"\x89QSLICE\n"
FORMAT_VERSION = (1, 1)
"""(major, minor). A reader reads every minor version of its major version; see the docs."""

# magic, major, minor, crc of the first 12 bytes
_LEAD = struct.Struct("<8sHH4s")
# n_quanta, file_length, (offset, length) of header, tables, dictionary; index offset,
# records offset, digests of header, tables+dictionary, index; digest of all of the above
_BODY = struct.Struct("<QQQQQQQQQQ8s8s8s")
_PREAMBLE_SIZE = _LEAD.size + _BODY.size + 8
_OFFSET = struct.Struct("<Q")
_TWO_OFFSETS = struct.Struct("<QQ")
_DIGEST_SIZE = 8
_PICKLE_PROTOCOL = 5
_ZSTD_LEVEL = 9
_MAX_RECORD_SIZE = 1 << 30
_DICT_SIZE = 32 * 1024
_DICT_SAMPLES = 4000
_MIN_DICT_SAMPLES = 200


_T = TypeVar("_T")


class GraphFileError(ValueError):
    """A graph file that cannot be read: truncated, altered, or of an unsupported version.

    The message names the file and what is wrong with it.
    """


def _digest(*parts: bytes | bytearray) -> bytes:
    h = blake2b(digest_size=_DIGEST_SIZE)
    for part in parts:
        h.update(part)
    return h.digest()


def _lead_check(magic: bytes, major: int, minor: int) -> bytes:
    return _digest(struct.pack("<8sHH", magic, major, minor))[:4]


class _PlainUnpickler(pickle.Unpickler):
    """Unpickle only plain data: any reference to a class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: graph records hold plain data only")


def _loads_plain(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


# --------------------------------------------------------------------------------------------- writing


def _record_digest(id: int, payload: bytes) -> bytes:
    return _digest(_OFFSET.pack(id), payload)


def _train_dictionary(samples: list[bytes | bytearray | memoryview[int]]) -> bytes:
    """Train a zstd dictionary, or return ``b""`` when there are too few samples to help."""
    if len(samples) < _MIN_DICT_SAMPLES:
        return b""
    try:
        return zstandard.train_dictionary(_DICT_SIZE, samples, level=_ZSTD_LEVEL).as_bytes()
    except zstandard.ZstdError:
        # the trainer refuses sample sets it cannot learn from; records then compress alone
        return b""


def _compressor(dictionary: bytes) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(
        level=_ZSTD_LEVEL,
        dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None,
        write_checksum=False,
        write_content_size=True,
        write_dict_id=False,
    )


def _decompressor(dictionary: bytes) -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(
        dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None
    )


def write_graph(path: str | os.PathLike[str], quanta: Sequence[Quantum], header: dict[str, Any]) -> None:
    """Write ``quanta`` (already in dependency order, ``quantum.id == position``) to ``path``.

    Parameters
    ----------
    path : path-like
        Destination. The file is written next to it under a temporary name and renamed
        into place, so a crash never leaves a half-written graph under the final name.
    quanta : sequence of `Quantum`
        The quanta; record ``i`` is ``quanta[i]``.
    header : `dict`
        JSON-serialisable header content (pipeline, configs, provenance, metadata).

    Raises
    ------
    TypeError
        If the header is not JSON-serialisable or a data-ID value is neither int nor str.
    """
    path = os.fspath(path)
    n = len(quanta)
    import json  # not on the one-quantum path

    header = dict(header, formatVersion=f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}", nQuanta=n)
    try:
        header_bytes = json.dumps(header, sort_keys=True, ensure_ascii=False).encode()
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"graph header for {path} is not JSON-serialisable ({err}); keep metadata to "
            "str/int/float/bool/None, lists and dicts"
        ) from None

    with gc_paused():
        _write_graph(path, quanta, header_bytes)


def _write_graph(path: str, quanta: Sequence[Quantum], header_bytes: bytes) -> None:
    n = len(quanta)
    encoder = RecordEncoder()
    dumps = pickle.dumps
    step = max(1, n // _DICT_SAMPLES)
    samples: list[bytes | bytearray | memoryview[int]] = [
        dumps(encoder.encode(quanta[i]), protocol=_PICKLE_PROTOCOL) for i in range(0, n, step)
    ]
    dictionary = _train_dictionary(samples)
    compress = _compressor(dictionary).compress

    with atomic_open(path, "wb") as f:  # synced before the rename
        f.write(b"\0" * _PREAMBLE_SIZE)
        header_offset = f.tell()
        f.write(header_bytes)
        records_offset = f.tell()
        offsets = bytearray()
        position = records_offset
        write = f.write
        pack = _OFFSET.pack
        for i, quantum in enumerate(quanta):
            if quantum.id != i:
                raise ValueError(f"quantum at position {i} has id {quantum.id}; ids must be 0..n-1 in order")
            payload = compress(dumps(encoder.encode(quantum), protocol=_PICKLE_PROTOCOL))
            write(_record_digest(i, payload))
            write(payload)
            offsets += pack(position)
            position += _DIGEST_SIZE + len(payload)
        offsets += pack(position)
        tables_bytes = pickle.dumps(encoder.tables(), protocol=_PICKLE_PROTOCOL)
        tables_offset = position
        write(tables_bytes)
        dict_offset = tables_offset + len(tables_bytes)
        write(dictionary)
        index_offset = dict_offset + len(dictionary)
        write(offsets)
        file_length = index_offset + len(offsets)
        body = _BODY.pack(
            n,
            file_length,
            header_offset,
            len(header_bytes),
            tables_offset,
            len(tables_bytes),
            dict_offset,
            len(dictionary),
            index_offset,
            records_offset,
            _digest(header_bytes),
            _digest(tables_bytes, dictionary),
            _digest(offsets),
        )
        major, minor = FORMAT_VERSION
        lead = _LEAD.pack(MAGIC, major, minor, _lead_check(MAGIC, major, minor))
        f.seek(0)
        f.write(lead + body + _digest(lead, body))


# --------------------------------------------------------------------------------------------- reading


class _Layout:
    """The validated preamble of an open graph file."""

    __slots__ = (
        "path",
        "major",
        "minor",
        "n",
        "header",
        "tables",
        "dictionary",
        "index_offset",
        "records_offset",
        "header_digest",
        "tables_digest",
        "index_digest",
    )

    def __init__(self, path: str, f: Any):
        self.path = path
        size = os.fstat(f.fileno()).st_size
        raw = f.read(_PREAMBLE_SIZE)
        if len(raw) < _LEAD.size and MAGIC.startswith(raw[:8]):
            raise GraphFileError(
                f"{path} is truncated: {size} bytes, shorter than its {_PREAMBLE_SIZE}-byte preamble"
            )
        if raw[:8] != MAGIC:
            raise GraphFileError(
                f"{path} is not a quantum graph file (it does not start with the .qgraph magic bytes)"
            )
        magic, major, minor, check = _LEAD.unpack_from(raw)
        if check != _lead_check(magic, major, minor):
            raise GraphFileError(
                f"{path}: the format-version bytes are corrupted; the file cannot be trusted"
            )
        if major != FORMAT_VERSION[0]:
            newer = major > FORMAT_VERSION[0]
            raise GraphFileError(
                f"{path} uses graph format version {major}.{minor}; this reader reads only major "
                f"version {FORMAT_VERSION[0]}. "
                + (
                    "Upgrade supertask to read it."
                    if newer
                    else "Re-create the graph with this version, or read it with an older supertask."
                )
            )
        self.major, self.minor = major, minor
        if len(raw) < _PREAMBLE_SIZE:
            raise GraphFileError(
                f"{path} is truncated: {size} bytes, shorter than its {_PREAMBLE_SIZE}-byte preamble"
            )
        body = raw[_LEAD.size : _LEAD.size + _BODY.size]
        if raw[-8:] != _digest(raw[: _LEAD.size], body):
            raise GraphFileError(f"{path}: the preamble checksum does not match; the file is corrupted")
        (
            self.n,
            file_length,
            header_offset,
            header_length,
            tables_offset,
            tables_length,
            dict_offset,
            dict_length,
            self.index_offset,
            self.records_offset,
            self.header_digest,
            self.tables_digest,
            self.index_digest,
        ) = _BODY.unpack(body)
        if size != file_length:
            what = "truncated" if size < file_length else "longer than written (appended to)"
            raise GraphFileError(f"{path} is {what}: it has {size} bytes, its preamble says {file_length}")
        self.header = (header_offset, header_length)
        self.tables = (tables_offset, tables_length)
        self.dictionary = (dict_offset, dict_length)
        if not (
            _PREAMBLE_SIZE <= header_offset <= self.records_offset <= tables_offset
            and tables_offset + tables_length == dict_offset
            and dict_offset + dict_length == self.index_offset
            and self.index_offset + 8 * (self.n + 1) == file_length
        ):
            raise GraphFileError(f"{path}: the section offsets in the preamble are inconsistent")

    def error(self, what: str) -> GraphFileError:
        return GraphFileError(f"{self.path}: {what}")


def _read_at(f: Any, offset: int, length: int) -> bytes:
    f.seek(offset)
    data: bytes = f.read(length)
    if len(data) != length:
        raise GraphFileError(f"{f.name} is truncated: cannot read {length} bytes at offset {offset}")
    return data


def _open(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The open file and its layout: a `_Layout`, or a `~supertask.graph.slice_file.SliceLayout`
    for a graph slice (recognised by its magic), which the readers below read alike."""
    path = os.fspath(path)
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        if f.read(len(MAGIC)) == _SLICE_MAGIC:
            from .slice_file import SliceLayout

            f.seek(0)
            return f, SliceLayout(path, f)
        f.seek(0)
        return f, _Layout(path, f)
    except BaseException:
        f.close()
        raise


def _span(f: Any, layout: Any, id: int) -> tuple[int, int]:
    """``(start, end)`` of quantum ``id``'s record, through the index or a slice's id table."""
    if not isinstance(layout, _Layout):
        span: tuple[int, int] = layout.span(f, id)
        return span
    _check_id(layout, id)
    start, end = _TWO_OFFSETS.unpack(_read_at(f, layout.index_offset + 8 * id, 16))
    _record_span(layout, start, end, id)
    return start, end


def _read_header(f: Any, layout: _Layout) -> dict[str, Any]:
    import json  # not on the one-quantum path

    data = _read_at(f, *layout.header)
    if _digest(data) != layout.header_digest:
        raise layout.error("the header checksum does not match; the header is corrupted")
    try:
        header = json.loads(data)
    except ValueError as err:
        raise layout.error(f"the header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise layout.error("the header is not a JSON object")
    return header


def _read_decoding(f: Any, layout: _Layout) -> tuple[RecordDecoder, Callable[..., bytes]]:
    """Read and check the interning tables and the dictionary; return a decoder and decompress."""
    decoder, decompressor = _read_tables(f, layout)
    return decoder, decompressor.decompress


def _read_tables(f: Any, layout: _Layout) -> tuple[RecordDecoder, zstandard.ZstdDecompressor]:
    """Read and check the interning tables and the dictionary; return a decoder and a decompressor."""
    tables_offset, tables_length = layout.tables
    blob = _read_at(f, tables_offset, tables_length + layout.dictionary[1])
    tables_bytes, dictionary = blob[:tables_length], blob[tables_length:]
    if _digest(tables_bytes, dictionary) != layout.tables_digest:
        raise layout.error("the checksum of the dataset-type tables and dictionary does not match")
    try:
        tables: Tables = _loads_plain(tables_bytes)
        decoder = RecordDecoder(tables)
        decompressor = _decompressor(dictionary)
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, zstandard.ZstdError) as err:
        raise layout.error(f"the dataset-type tables cannot be read ({err})") from None
    return decoder, decompressor


def _decode_record(
    layout: _Layout,
    id: int,
    blob: bytes,
    decode: Callable[[tuple[Any, ...], int], _T],
    decompress: Callable[..., bytes],
) -> _T:
    """Check, decompress, unpickle and decode (``decode(record, id)``) the record of quantum ``id``."""
    digest, payload = blob[:_DIGEST_SIZE], blob[_DIGEST_SIZE:]
    if len(digest) != _DIGEST_SIZE or _record_digest(id, payload) != digest:
        raise layout.error(
            f"the checksum of quantum {id}'s record does not match (record or index corrupted); "
            "the record was not loaded"
        )
    try:
        record = _loads_plain(decompress(payload, max_output_size=_MAX_RECORD_SIZE))
        return decode(record, id)
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, zstandard.ZstdError) as err:
        raise layout.error(f"quantum {id}'s record cannot be decoded ({err})") from None


def _decode_chunk(
    layout: _Layout,
    first: int,
    last: int,
    records: bytes,
    offsets: Sequence[int],
    decode: Callable[[tuple[Any, ...], int], _T],
    decompressor: zstandard.ZstdDecompressor,
) -> list[_T]:
    """`_decode_record` of records ``first`` to ``last - 1`` (``records`` from ``offsets[first]``).

    The same values and errors, for less work per record: every checksum is checked first
    (so, as there, nothing is decompressed before its checksum is checked; each digest a copy
    of one empty digest, the stored digest compared as bytes, not as a memoryview), the records
    are decompressed in one call (``multi_decompress_to_buffer``) and unpickled from one
    buffer. A record the bulk path cannot take (no or too large a content size in its
    frame, a pickle that does not end where the record ends) is decoded alone by
    `_decode_record`, which gives its error.
    """
    start = offsets[first]
    view = memoryview(records)
    pack, content_size = _OFFSET.pack, zstandard.frame_content_size
    # a copy of an empty digest costs less than making one with its size given by keyword
    empty = blake2b(digest_size=_DIGEST_SIZE).copy
    payloads: list[bytes | bytearray | memoryview[int]] = []
    sizes = []
    for i, a, b in zip(range(first, last), offsets[first:last], offsets[first + 1 : last + 1], strict=True):
        a -= start
        b -= start
        payload = view[a + _DIGEST_SIZE : b]
        h = empty()
        h.update(pack(i))
        h.update(payload)
        if b - a < _DIGEST_SIZE or h.digest() != records[a : a + _DIGEST_SIZE]:
            raise layout.error(
                f"the checksum of quantum {i}'s record does not match (record or index corrupted); "
                "the record was not loaded"
            )
        payloads.append(payload)
        try:
            sizes.append(content_size(payload))
        except zstandard.ZstdError:
            sizes.append(-1)
    data = None
    if payloads and min(sizes) >= 0 and max(sizes) <= _MAX_RECORD_SIZE:
        try:
            segments = decompressor.multi_decompress_to_buffer(payloads)
            # a BufferSegment exports the buffer protocol (its stub does not say so): joined without a copy each
            data = b"".join(cast("list[bytes]", [segments[k] for k in range(len(segments))]))
        except zstandard.ZstdError:
            data = None
    del payloads, view
    if data is None or len(data) != sum(sizes):
        decompress = decompressor.decompress
        return [
            _decode_record(
                layout, i, records[offsets[i] - start : offsets[i + 1] - start], decode, decompress
            )
            for i in range(first, last)
        ]
    buffer = io.BytesIO(data)
    tell, seek = buffer.tell, buffer.seek
    result = []
    begin = 0
    for i, size in zip(range(first, last), sizes, strict=True):
        end = begin + size
        try:
            record = _PlainUnpickler(buffer).load()
            alone = tell() != end
        except Exception:  # noqa: BLE001 - the record alone gives its own error, as `_decode_record`
            alone = True
        try:
            if alone:  # the pickle does not end where the record does: unpickle the record's bytes alone
                seek(end)
                record = _loads_plain(data[begin:end])
            result.append(decode(record, i))
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as err:
            raise layout.error(f"quantum {i}'s record cannot be decoded ({err})") from None
        begin = end
    return result


def _check_id(layout: _Layout, id: int) -> int:
    if isinstance(id, bool) or not isinstance(id, int):
        raise TypeError(f"quantum id must be an int, not {type(id).__name__}")
    if not 0 <= id < layout.n:
        raise IndexError(f"no quantum {id} in {layout.path}: it holds quanta 0..{layout.n - 1}")
    return id


def _record_span(layout: _Layout, start: int, end: int, id: int) -> None:
    if not layout.records_offset <= start < end <= layout.tables[0] or end - start > _MAX_RECORD_SIZE:
        raise layout.error(f"the index entry of quantum {id} is corrupted (offsets {start}..{end})")


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the JSON header of a graph file (pipeline, configs, provenance, metadata)."""
    f, layout = _open(path)
    with f:
        return _read_header(f, layout)


def read_quantum(path: str | os.PathLike[str], id: int) -> Quantum:
    """Read the quantum with index ``id``, and nothing else of the graph.

    Raises
    ------
    GraphFileError
        If the file is truncated, corrupted or of an unsupported version.
    IndexError
        If the graph has no quantum ``id``.
    """
    f, layout = _open(path)
    with f:
        if isinstance(layout, _Layout):
            _check_id(layout, id)
        decoder, decompress = _read_decoding(f, layout)
        start, end = _span(f, layout, id)
        return _decode_record(layout, id, _read_at(f, start, end - start), decoder.decode, decompress)


def read_quanta(path: str | os.PathLike[str], ids: Iterable[int] | None = None) -> list[Quantum]:
    """Read several quanta (all of them when ``ids`` is None), sharing their `Dataset` objects.

    Reading everything also checks the index checksum, so a corrupted index is
    reported as such rather than as a bad record.
    """
    f, layout = _open(path)
    with f, gc_paused():
        decoder, decompress = _read_decoding(f, layout)
        if ids is None and not isinstance(layout, _Layout):
            ids = layout.ids(f)  # a slice: every quantum it holds
        if ids is None:
            index = _read_at(f, layout.index_offset, 8 * (layout.n + 1))
            if _digest(index) != layout.index_digest:
                raise layout.error("the index checksum does not match; the index is corrupted")
            offsets = struct.unpack(f"<{layout.n + 1}Q", index)
            records = _read_at(f, layout.records_offset, layout.tables[0] - layout.records_offset)
            base = layout.records_offset
            quanta = []
            for i in range(layout.n):
                start, end = offsets[i], offsets[i + 1]
                _record_span(layout, start, end, i)
                quanta.append(
                    _decode_record(layout, i, records[start - base : end - base], decoder.decode, decompress)
                )
            return quanta
        result = []
        for id in ids:
            start, end = _span(f, layout, id)
            result.append(
                _decode_record(layout, id, _read_at(f, start, end - start), decoder.decode, decompress)
            )
        return result


def iter_quanta(path: str | os.PathLike[str], chunk: int = 10_000) -> Iterator[Quantum]:
    """Yield every quantum of a graph file in id (dependency) order, holding one chunk at a time.

    Unlike `read_quanta`, equal datasets are one object only within a chunk of ``chunk``
    quanta (each chunk has a decoder of its own), so a caller that keeps what it needs of
    each quantum never holds the whole graph: `bps prepare` streams a workflow of 10^6
    quanta this way. The index checksum is checked before the first quantum is yielded.

    Raises
    ------
    GraphFileError
        If the file is truncated, corrupted or of an unsupported version.
    """
    f, layout = _open(path)
    with f:
        _, decompress = _read_decoding(f, layout)
        for first, last, records, offsets in _chunks(f, layout, chunk):
            start = offsets[first]
            decoder, _ = _read_decoding(f, layout)
            with gc_paused():
                quanta = [
                    _decode_record(
                        layout,
                        i,
                        records[offsets[i] - start : offsets[i + 1] - start],
                        decoder.decode,
                        decompress,
                    )
                    for i in range(first, last)
                ]
            yield from quanta
            del quanta, records, decoder


def _chunks(f: Any, layout: _Layout, chunk: int) -> Iterator[tuple[int, int, bytes, tuple[int, ...]]]:
    """``(first, last, records, offsets)`` per chunk of ``chunk`` quanta: the bytes of records
    ``first`` to ``last - 1`` (from ``offsets[first]``), after checking the index's checksum."""
    index = _read_at(f, layout.index_offset, 8 * (layout.n + 1))
    if _digest(index) != layout.index_digest:
        raise layout.error("the index checksum does not match; the index is corrupted")
    offsets = struct.unpack(f"<{layout.n + 1}Q", index)
    del index
    step = max(chunk, 1)
    for first in range(0, layout.n, step):
        last = min(first + step, layout.n)
        for i in range(first, last):
            _record_span(layout, offsets[i], offsets[i + 1], i)
        start, end = offsets[first], offsets[last]
        yield first, last, _read_at(f, start, end - start), offsets


class RecordStream:
    """Every quantum of a graph file as plain values (`RecordDecoder.decode_plain`), streamed.

    For a caller that keeps a few columns per quantum and dataset (`bps prepare`'s streamed
    workflow): no `Quantum`, `Dataset` or `DataId` is made, and one chunk of ``chunk``
    records is in memory at a time. The tables the values' indices refer to (`decoder`'s
    ``types``, ``keysets``, ``labels``, ``runs``) are read when the stream is made. Each
    record's checksum, and the index's before the first record, are checked as
    `iter_quanta` checks them.

    Raises
    ------
    GraphFileError
        If the file is truncated, corrupted or of an unsupported version (when made, or
        while iterating).
    """

    def __init__(self, path: str | os.PathLike[str], chunk: int = 10_000):
        self.path = os.fspath(path)
        self.chunk = chunk
        f, layout = _open(self.path)
        with f:
            self.decoder, _ = _read_decoding(f, layout)
            self._tables_digest = layout.tables_digest
            self.n: int = layout.n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[PlainQuantum]:
        f, layout = _open(self.path)
        with f:
            _, decompressor = _read_tables(f, layout)
            if layout.tables_digest != self._tables_digest or layout.n != self.n:
                raise layout.error("the file changed since its tables were read; read it again")
            decode = self.decoder.decode_plain
            for first, last, records, offsets in _chunks(f, layout, self.chunk):
                with gc_paused():
                    plain = _decode_chunk(layout, first, last, records, offsets, decode, decompressor)
                del records
                yield from plain
                del plain


def iter_records(path: str | os.PathLike[str], chunk: int = 10_000) -> RecordStream:
    """The records of a graph file as plain values, streamed one chunk at a time (`RecordStream`)."""
    return RecordStream(path, chunk)


def read_format_version(path: str | os.PathLike[str]) -> tuple[int, int]:
    """The (major, minor) format version of a graph file, after checking its preamble."""
    f, layout = _open(path)
    with f:
        return layout.major, layout.minor
