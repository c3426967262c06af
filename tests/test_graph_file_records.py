"""`file_format.iter_records`: a graph file's quanta as plain values, equal to the decoded quanta.

The streamed `bps prepare` reads records without making `Quantum`, `Dataset` or `DataId`
objects; it must see exactly what `iter_quanta` decodes, whatever the chunk size, and refuse a
damaged or malformed file with the same `GraphFileError`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from test_graph_file import _CreatesFile, flip, layout, make_graph

from supertask.graph import file_format
from supertask.graph.file_format import GraphFileError
from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum
from supertask.repo.dataid import DataId
from supertask.repo.dataset import Dataset, DatasetType


def _as_plain(path: Path, chunk: int) -> list[tuple]:
    """Every record through `iter_records`, with the table indices resolved."""
    records = file_format.iter_records(path, chunk)
    tables = records.decoder

    def datasets(plain):
        return [
            (
                tables.types[t].name,
                DataId(dict(zip(tables.keysets[ks], values, strict=True))),
                id,
                tables.runs[run] if run >= 0 else None,
            )
            for t, ks, values, id, run in plain
        ]

    return [
        (
            j,
            tables.labels[label],
            DataId(dict(zip(tables.keysets[ks], values, strict=True))),
            datasets(inputs),
            datasets(outputs),
        )
        for j, (label, ks, values, inputs, outputs) in enumerate(records)
    ]


def _as_decoded(path: Path) -> list[tuple]:
    def datasets(by_type):
        return [(d.datasetType.name, d.dataId, d.id, d.run) for ds in by_type.values() for d in ds]

    return [
        (q.id, q.taskLabel, q.dataId, datasets(q.inputs), datasets(q.outputs))
        for q in file_format.read_quanta(path)
    ]


def _unusual_quanta() -> list[Quantum]:
    """Mixed data-ID keys in one type, several datasets per type, partial ids and runs, empty IDs."""
    ref = DatasetType("refcat", ("htm7",), "Table")
    out = DatasetType("matched", ("visit",), "Table")
    schema = DatasetType("src_schema", (), "Table")
    return [
        Quantum("init", DataId(), {}, {"src_schema": [Dataset(schema, DataId())]}, id=0),
        Quantum(
            "match",
            DataId(visit=1),
            {
                "refcat": [
                    Dataset(ref, DataId(htm7=1), id=11, run="refcats"),
                    Dataset(ref, DataId(htm7=2, extra="x")),
                    Dataset(ref, DataId(htm7=3), id=13),
                ],
                "src_schema": [Dataset(schema, DataId())] * 2,
            },
            {"matched": [Dataset(out, DataId(visit=1)), Dataset(out, DataId(visit=2))]},
            id=1,
        ),
    ]


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_records_are_the_decoded_quanta_in_any_chunk_size(tmp_path: Path, chunk: int):
    path = tmp_path / "g.qgraph"
    make_graph(60).save(path)
    assert _as_plain(path, chunk) == _as_decoded(path)
    assert len(file_format.iter_records(path, chunk)) == len(QuantumGraph.load(path)) > 50


@pytest.mark.parametrize("chunk", [1, 2])
def test_records_with_mixed_keys_several_datasets_and_empty_ids_are_the_decoded_quanta(
    tmp_path: Path, chunk: int
):
    path = tmp_path / "g.qgraph"
    QuantumGraph(_unusual_quanta()).save(path)
    assert _as_plain(path, chunk) == _as_decoded(path)


def test_records_can_be_read_twice(tmp_path: Path):
    path = tmp_path / "g.qgraph"
    make_graph(20).save(path)
    records = file_format.iter_records(path, 3)
    assert list(records) == list(records)


def test_a_flipped_byte_in_a_record_stops_the_stream_at_that_quantum(tmp_path: Path):
    path = tmp_path / "g.qgraph"
    make_graph(20).save(path)
    lay = layout(path)
    with open(path, "rb") as f:
        f.seek(lay.index_offset + 8 * 5)
        start, end = struct.unpack("<QQ", f.read(16))
    flip(path, (start + end) // 2)
    read = []
    with pytest.raises(GraphFileError, match="checksum of quantum 5's record"):
        for record in file_format.iter_records(path, chunk=1):
            read.append(record)
    assert len(read) == 5


def test_a_flipped_byte_in_the_index_is_refused_before_the_first_record(tmp_path: Path):
    path = tmp_path / "g.qgraph"
    make_graph(20).save(path)
    flip(path, layout(path).index_offset + 8 * 5)
    with pytest.raises(GraphFileError, match="index"):
        next(iter(file_format.iter_records(path)))


def test_a_flipped_byte_in_the_tables_is_refused_when_the_stream_is_made(tmp_path: Path):
    path = tmp_path / "g.qgraph"
    make_graph(20).save(path)
    flip(path, layout(path).tables[0] + 5)
    with pytest.raises(GraphFileError, match="tables"):
        file_format.iter_records(path)


def test_a_truncated_file_is_refused(tmp_path: Path):
    path = tmp_path / "g.qgraph"
    make_graph(20).save(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(GraphFileError, match="truncated"):
        file_format.iter_records(path)


def test_a_record_that_names_a_class_is_refused_without_running_it(tmp_path: Path, monkeypatch):
    path, marker = tmp_path / "hostile.qgraph", tmp_path / "pwned"
    real_encode = file_format.RecordEncoder.encode

    def hostile_encode(self, quantum):
        record = real_encode(self, quantum)
        return (_CreatesFile(str(marker)),) + record[1:] if quantum.id == 0 else record

    monkeypatch.setattr(file_format.RecordEncoder, "encode", hostile_encode)
    make_graph(5).save(path)
    monkeypatch.undo()
    with pytest.raises(GraphFileError, match="quantum 0.*refusing to load .*open"):
        list(file_format.iter_records(path))
    assert not marker.exists()


# Records that pass their checksum but do not have the layout of the format: a writer's bug.
_MALFORMED = {
    "too few fields": lambda r: r[:4],
    "unknown label": lambda r: (99,) + r[1:],
    "values not matching the keys": lambda r: r[:2] + (r[2][:-1],) + r[3:],
    "unknown dataset type": lambda r: r[:3] + (((99,) + r[3][0][1:],) + r[3][1:],) + r[4:],
    "dataset values not matching the keys": lambda r: (
        r[:4] + ((r[4][0][:2] + (r[4][0][2][:-1],) + r[4][0][3:],) + r[4][1:],)
    ),
    "ids not matching the datasets": lambda r: r[:4] + ((r[4][0][:3] + ((1, 2, 3),) + r[4][0][4:],),),
    "unknown run": lambda r: r[:3] + ((r[3][0][:4] + ((99,),),) + r[3][1:],) + r[4:],
}


@pytest.mark.parametrize("damage", list(_MALFORMED))
def test_a_malformed_record_is_refused_by_records_as_by_quanta(tmp_path: Path, monkeypatch, damage: str):
    path = tmp_path / "bad.qgraph"
    real_encode = file_format.RecordEncoder.encode

    def bad_encode(self, quantum):
        record = real_encode(self, quantum)
        return _MALFORMED[damage](record) if quantum.id == 2 else record

    monkeypatch.setattr(file_format.RecordEncoder, "encode", bad_encode)
    ref = DatasetType("ref", ("htm7", "instrument"), "Table")
    out = DatasetType("out", ("htm7", "instrument"), "Table")
    make = [
        Quantum(
            "t",
            DataId(htm7=i, instrument="Cam"),
            {"ref": [Dataset(ref, DataId(htm7=i, instrument="Cam"), id=i, run="refs")]},
            {"out": [Dataset(out, DataId(htm7=i, instrument="Cam"))]},
            id=i,
        )
        for i in range(4)
    ]
    QuantumGraph(make).save(path)
    monkeypatch.undo()
    with pytest.raises(GraphFileError, match="quantum 2's record cannot be decoded") as by_quanta:
        list(file_format.iter_quanta(path))
    with pytest.raises(GraphFileError, match="quantum 2's record cannot be decoded") as by_records:
        list(file_format.iter_records(path))
    assert str(path) in str(by_records.value) and "malformed" in str(by_quanta.value)


class _AlteringCompressor:
    """Compresses each record's pickle after ``alter(id, pickle)``, as a writer with a bug might."""

    def __init__(self, real, alter, content_size: bool = True):
        import zstandard

        self._real = real if content_size else zstandard.ZstdCompressor(write_content_size=False)
        self._alter = alter
        self._id = 0

    def compress(self, data: bytes) -> bytes:
        data = self._alter(self._id, data)
        self._id += 1
        return self._real.compress(data)


def _save_altered(path: Path, monkeypatch, alter, content_size: bool = True) -> None:
    real = file_format._compressor
    monkeypatch.setattr(
        file_format, "_compressor", lambda d: _AlteringCompressor(real(d), alter, content_size)
    )
    make_graph(30).save(path)
    monkeypatch.undo()


@pytest.mark.parametrize("chunk", [1, 10_000])
def test_records_whose_frames_do_not_say_their_size_are_the_decoded_quanta(
    tmp_path: Path, monkeypatch, chunk: int
):
    """A chunk is decompressed in one call only when every frame says its size; else record by record."""
    path = tmp_path / "g.qgraph"
    _save_altered(path, monkeypatch, lambda id, data: data, content_size=False)
    assert _as_plain(path, chunk) == _as_decoded(path)


@pytest.mark.parametrize("chunk", [1, 10_000])
def test_a_record_with_bytes_after_its_pickle_is_read_as_by_quanta(tmp_path: Path, monkeypatch, chunk: int):
    """A chunk's records are unpickled from one buffer; bytes after a record's pickle are not the next record."""
    path = tmp_path / "g.qgraph"
    _save_altered(path, monkeypatch, lambda id, data: data + b"\x80junk" if id == 4 else data)
    assert _as_plain(path, chunk) == _as_decoded(path)


@pytest.mark.parametrize("chunk", [1, 10_000])
def test_a_record_whose_pickle_is_cut_short_is_refused_by_records_as_by_quanta(
    tmp_path: Path, monkeypatch, chunk: int
):
    """Unpickled from one buffer, a record cut short must not run on into the next record's bytes."""
    path = tmp_path / "g.qgraph"
    _save_altered(path, monkeypatch, lambda id, data: data[:-1] if id == 4 else data)
    with pytest.raises(GraphFileError, match="quantum 4's record cannot be decoded") as by_quanta:
        list(file_format.iter_quanta(path))
    with pytest.raises(GraphFileError, match="quantum 4's record cannot be decoded") as by_records:
        list(file_format.iter_records(path, chunk))
    assert str(by_records.value) == str(by_quanta.value)
