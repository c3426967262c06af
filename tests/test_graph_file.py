"""The .qgraph file: round trips, single-quantum reads, and refusal of damaged or foreign files."""

from __future__ import annotations

import importlib.util
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from supertask.graph import file_format
from supertask.graph.file_format import GraphFileError
from supertask.graph.quantum_graph import QuantumGraph
from supertask.quantum import Quantum

_spec = importlib.util.spec_from_file_location(
    "synthetic_graph", Path(__file__).parents[1] / "benchmarks" / "synthetic_graph.py"
)
synthetic_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synthetic_graph)

N_QUANTA = 600  # enough for the dictionary to be trained


def make_graph(n: int = N_QUANTA) -> QuantumGraph:
    return QuantumGraph(
        synthetic_graph.synthetic_quanta(n),
        pipelineYaml=synthetic_graph.PIPELINE_YAML,
        configs=synthetic_graph.CONFIGS,
        metadata={"where": "band = 'r'", "collections": ["raw/all"]},
    )


@pytest.fixture(scope="module")
def graph() -> QuantumGraph:
    return make_graph()


@pytest.fixture(scope="module")
def saved(graph: QuantumGraph, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("graph") / "run.qgraph"
    graph.save(path, commandLine=["supertask", "qgraph", "-p", "drp.yaml"])
    return path


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    """A private copy of the saved file, to damage."""
    path = tmp_path / "copy.qgraph"
    path.write_bytes(saved.read_bytes())
    return path


def describe(quantum: Quantum) -> tuple:
    def datasets(by_type):
        return {k: [(d.dataId, d.id, d.run) for d in v] for k, v in by_type.items()}

    return (
        quantum.id,
        quantum.taskLabel,
        quantum.dataId,
        datasets(quantum.inputs),
        datasets(quantum.outputs),
    )


def layout(path: Path) -> file_format._Layout:
    with open(path, "rb") as f:
        return file_format._Layout(str(path), f)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def rewrite_preamble(path: Path, major: int, minor: int) -> None:
    """Set the format version and recompute the preamble's checks, as a writer of that version would."""
    data = bytearray(path.read_bytes())
    lead = file_format._LEAD.pack(
        file_format.MAGIC, major, minor, file_format._lead_check(file_format.MAGIC, major, minor)
    )
    body = bytes(data[file_format._LEAD.size : file_format._LEAD.size + file_format._BODY.size])
    data[: file_format._PREAMBLE_SIZE] = lead + body + file_format._digest(lead, body)
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_keeps_quanta_ids_data_ids_and_registry_ids(graph: QuantumGraph, saved: Path):
    loaded = QuantumGraph.load(saved)
    assert len(loaded) == len(graph)
    assert [describe(q) for q in loaded] == [describe(q) for q in graph]


def test_round_trip_keeps_links_and_shares_datasets(graph: QuantumGraph, saved: Path):
    loaded = QuantumGraph.load(saved)
    for original, copy_ in zip(graph, loaded, strict=True):
        assert [p.id for p in loaded.parents(copy_)] == [p.id for p in graph.parents(original)]
        assert [c.id for c in loaded.children(copy_)] == [c.id for c in graph.children(original)]
    warp_quantum = loaded.quantaByLabel()["makeWarp"][0]
    calexp = warp_quantum.inputs["calexp"][0]
    assert calexp.creator is not None
    assert any(d is calexp for d in calexp.creator.outputs["calexp"])
    assert {k: len(v) for k, v in loaded.datasets.items()} == {k: len(v) for k, v in graph.datasets.items()}


def test_round_trip_keeps_the_header(graph: QuantumGraph, saved: Path):
    loaded = QuantumGraph.load(saved)
    assert loaded.pipelineYaml == graph.pipelineYaml
    assert loaded.configs == graph.configs
    assert loaded.metadata == graph.metadata
    header = QuantumGraph.readHeader(saved)
    assert header["formatVersion"] == "1.1"
    assert header["nQuanta"] == len(graph)
    assert header["provenance"]["commandLine"] == "supertask qgraph -p drp.yaml"
    assert "zstandard" in header["provenance"]["packages"]
    assert loaded.provenance == header["provenance"]
    summary = graph.summary()
    assert header["summary"] == {
        "quantaPerLabel": summary.quantaPerLabel,
        "datasetsPerType": summary.datasetsPerType,
    }


def test_a_trained_dictionary_is_stored_for_large_enough_graphs(saved: Path):
    assert layout(saved).dictionary[1] > 0


def test_a_tiny_graph_without_a_dictionary_round_trips(tmp_path: Path):
    small = make_graph(5)
    path = tmp_path / "small.qgraph"
    small.save(path)
    assert layout(path).dictionary[1] == 0
    assert [describe(q) for q in QuantumGraph.load(path)] == [describe(q) for q in small]


def test_an_empty_graph_round_trips(tmp_path: Path):
    path = tmp_path / "empty.qgraph"
    QuantumGraph([], pipelineYaml="tasks: {}").save(path)
    loaded = QuantumGraph.load(path)
    assert len(loaded) == 0 and loaded.pipelineYaml == "tasks: {}"


# ------------------------------------------------------------------------------------------ partial reads


@pytest.mark.parametrize("position", [0, 1, N_QUANTA // 2, -1])
def test_single_quantum_load_equals_the_whole_load_quantum(graph: QuantumGraph, saved: Path, position: int):
    id = position % len(graph)
    assert describe(QuantumGraph.loadQuantum(saved, id)) == describe(graph[id])


def test_load_quanta_shares_and_links_datasets_between_the_quanta_read(graph: QuantumGraph, saved: Path):
    warp_quantum = graph.quantaByLabel()["makeWarp"][3]
    parent_ids = [p.id for p in graph.parents(warp_quantum)]
    quanta = QuantumGraph.loadQuanta(saved, [warp_quantum.id, *parent_ids])
    assert [q.id for q in quanta] == [warp_quantum.id, *parent_ids]
    loaded_warp = quanta[0]
    for calexp in loaded_warp.inputs["calexp"]:
        assert calexp.creator is not None and calexp.creator.id in parent_ids
        assert calexp.consumers == [loaded_warp]


def test_a_missing_quantum_id_is_an_index_error_naming_the_range(saved: Path, graph: QuantumGraph):
    with pytest.raises(IndexError, match=f"0..{len(graph) - 1}"):
        QuantumGraph.loadQuantum(saved, len(graph))


def test_reading_one_quantum_imports_nothing_heavy(saved: Path):
    code = (
        "import sys\n"
        "from supertask.graph.quantum_graph import QuantumGraph\n"
        f"q = QuantumGraph.loadQuantum({str(saved)!r}, 7)\n"
        "heavy = {'pydantic', 'sqlalchemy', 'numpy', 'rich', 'yaml', 'scipy', 'lark', 'click'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy), q.id)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "7"]


# ------------------------------------------------------------------------------------------ provenance


def test_provenance_masks_passwords_and_never_records_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SUPERTASK_TEST_SECRET", "hunter2-environment")
    path = tmp_path / "p.qgraph"
    make_graph(5).save(
        path,
        commandLine=[
            "supertask",
            "--db",
            "postgresql://alice:s3cr3t@db/repo",
            "--password",
            "pw0rd",
            "--token=tk",
        ],
    )
    data = path.read_bytes()
    for secret in (b"s3cr3t", b"pw0rd", b'tk"', b"hunter2-environment"):
        assert secret not in data
    command = QuantumGraph.readHeader(path)["provenance"]["commandLine"]
    assert "postgresql://alice:***@db/repo" in command and "--password '***'" in command
    assert "--token=" in command


def test_metadata_that_is_not_json_is_refused_at_save_with_the_fix(tmp_path: Path):
    graph = make_graph(5)
    graph.metadata["when"] = object()
    with pytest.raises(TypeError, match="JSON"):
        graph.save(tmp_path / "bad.qgraph")
    assert not list(tmp_path.iterdir()), "no file, not even a temporary one, is left behind"


# ------------------------------------------------------------------------------------------ damaged files


def test_truncated_files_are_refused(copy: Path):
    data = copy.read_bytes()
    lay = layout(copy)
    cuts = [
        0,
        5,
        30,
        file_format._PREAMBLE_SIZE,
        lay.header[0] + lay.header[1] // 2,
        lay.records_offset + 100,
        lay.tables[0] + 3,
        lay.index_offset + 12,
        len(data) - 1,
    ]
    for cut in cuts:
        copy.write_bytes(data[:cut])
        for read in (QuantumGraph.load, QuantumGraph.readHeader, lambda p: QuantumGraph.loadQuantum(p, 0)):
            with pytest.raises(GraphFileError, match="truncated") as info:
                read(copy)
            assert str(copy) in str(info.value)


def test_a_flipped_byte_in_a_record_is_refused(copy: Path):
    lay = layout(copy)
    with open(copy, "rb") as f:
        f.seek(lay.index_offset + 8 * 5)
        start, end = struct.unpack("<QQ", f.read(16))
    flip(copy, (start + end) // 2)
    with pytest.raises(GraphFileError, match="checksum of quantum 5's record"):
        QuantumGraph.loadQuantum(copy, 5)
    with pytest.raises(GraphFileError, match="quantum 5"):
        QuantumGraph.load(copy)
    assert QuantumGraph.loadQuantum(copy, 6).id == 6  # other records are still readable


@pytest.mark.parametrize("byte", [0, 7])
def test_a_flipped_byte_in_the_index_is_refused(copy: Path, byte: int):
    lay = layout(copy)
    flip(copy, lay.index_offset + 8 * 5 + byte)
    with pytest.raises(GraphFileError, match="quantum 5"):
        QuantumGraph.loadQuantum(copy, 5)
    with pytest.raises(GraphFileError, match="index"):
        QuantumGraph.load(copy)


def test_a_flipped_byte_in_the_header_is_refused(copy: Path):
    lay = layout(copy)
    flip(copy, lay.header[0] + 10)
    with pytest.raises(GraphFileError, match="header"):
        QuantumGraph.readHeader(copy)
    with pytest.raises(GraphFileError, match="header"):
        QuantumGraph.load(copy)


def test_a_flipped_byte_in_the_type_tables_is_refused(copy: Path):
    flip(copy, layout(copy).tables[0] + 20)
    with pytest.raises(GraphFileError, match="tables"):
        QuantumGraph.loadQuantum(copy, 0)


@pytest.mark.parametrize("offset", [20, 60, file_format._PREAMBLE_SIZE - 1])
def test_a_flipped_byte_in_the_preamble_is_refused(copy: Path, offset: int):
    flip(copy, offset)
    with pytest.raises(GraphFileError, match="preamble"):
        QuantumGraph.loadQuantum(copy, 0)


def test_a_flipped_version_byte_is_reported_as_corruption_not_as_a_version(copy: Path):
    flip(copy, 8)
    with pytest.raises(GraphFileError, match="corrupted"):
        QuantumGraph.load(copy)


def test_a_file_that_is_not_a_graph_is_refused(tmp_path: Path):
    path = tmp_path / "notes.qgraph"
    path.write_bytes(b"PK\x03\x04 this is a zip file, not a graph" * 10)
    with pytest.raises(GraphFileError, match="not a quantum graph file"):
        QuantumGraph.load(path)


def test_a_newer_major_version_is_refused_with_upgrade_advice(copy: Path):
    rewrite_preamble(copy, file_format.FORMAT_VERSION[0] + 1, 0)
    for read in (QuantumGraph.load, QuantumGraph.readHeader, lambda p: QuantumGraph.loadQuantum(p, 0)):
        with pytest.raises(GraphFileError, match=r"version 2\.0.*Upgrade supertask"):
            read(copy)


def test_a_newer_minor_version_is_read(copy: Path, graph: QuantumGraph):
    rewrite_preamble(copy, file_format.FORMAT_VERSION[0], file_format.FORMAT_VERSION[1] + 3)
    assert file_format.read_format_version(copy) == (
        file_format.FORMAT_VERSION[0],
        file_format.FORMAT_VERSION[1] + 3,
    )
    assert describe(QuantumGraph.loadQuantum(copy, 2)) == describe(graph[2])


# ------------------------------------------------------------------------------------------ never unpickled


class _CreatesFile:
    """Unpickling this creates ``path``: the side effect a hostile record would have."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_hostile_graph(path: Path, marker: Path, monkeypatch) -> None:
    """A graph file whose record 0 unpickles to ``open(marker, "w")``; checksums are valid."""
    real_encode = file_format.RecordEncoder.encode

    def hostile_encode(self, quantum):
        record = real_encode(self, quantum)
        return (_CreatesFile(str(marker)),) + record[1:] if quantum.id == 0 else record

    with monkeypatch.context() as m:
        m.setattr(file_format.RecordEncoder, "encode", hostile_encode)
        make_graph(5).save(path)
    assert not marker.exists()


def test_a_record_that_names_a_class_is_refused_without_running_it(tmp_path: Path, monkeypatch):
    path, marker = tmp_path / "hostile.qgraph", tmp_path / "pwned"
    write_hostile_graph(path, marker, monkeypatch)
    with pytest.raises(GraphFileError, match="quantum 0.*refusing to load .*open"):
        QuantumGraph.loadQuantum(path, 0)
    with pytest.raises(GraphFileError):
        QuantumGraph.load(path)
    assert not marker.exists()


def test_the_checksum_is_checked_before_unpickling(tmp_path: Path, monkeypatch):
    path, marker = tmp_path / "hostile.qgraph", tmp_path / "pwned"
    write_hostile_graph(path, marker, monkeypatch)
    # with a permissive unpickler, the record *would* run: prove the payload is live ...
    monkeypatch.setattr(file_format, "_PlainUnpickler", pickle.Unpickler)
    live = tmp_path / "live.qgraph"
    live.write_bytes(path.read_bytes())
    with pytest.raises(GraphFileError):
        QuantumGraph.loadQuantum(live, 0)  # decoding fails after the side effect
    assert marker.exists()
    marker.unlink()
    # ... then damage only the stored checksum: the intact payload must never be unpickled
    lay = layout(path)
    with open(path, "rb") as f:
        f.seek(lay.index_offset)
        start = struct.unpack("<Q", f.read(8))[0]
    flip(path, start)
    with pytest.raises(GraphFileError, match="checksum"):
        QuantumGraph.loadQuantum(path, 0)
    assert not marker.exists()


def test_the_header_is_plain_json(saved: Path):
    lay = layout(saved)
    with open(saved, "rb") as f:
        f.seek(lay.header[0])
        header = json.loads(f.read(lay.header[1]))
    assert header["pipelineYaml"] == synthetic_graph.PIPELINE_YAML
    assert set(header) == {
        "formatVersion",
        "nQuanta",
        "pipelineYaml",
        "pipelineJson",
        "configs",
        "metadata",
        "provenance",
        "summary",
    }
    # the same pipeline as JSON text, for batch jobs (which then need no YAML parser)
    assert json.loads(header["pipelineJson"]) == yaml.safe_load(synthetic_graph.PIPELINE_YAML)
    assert set(header["provenance"]) == {"commandLine", "packages", "python", "host", "created"}


# ------------------------------------------------------------------------------------------ unusual content


def test_mixed_data_id_keys_partial_registry_ids_and_runs_round_trip(tmp_path: Path):
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset, DatasetType

    ref = DatasetType("refcat", ("htm7",), "Table")
    out = DatasetType("matched", ("visit",), "Table")
    inputs = [
        Dataset(ref, DataId(htm7=1), id=11, run="refcats"),
        Dataset(ref, DataId(htm7=2, extra="x")),  # more keys than its units: kept as given
        Dataset(ref, DataId(htm7=3), id=13),
    ]
    quantum = Quantum(
        "match", DataId(visit=1), {"refcat": inputs}, {"matched": [Dataset(out, DataId(visit=1))]}
    )
    path = tmp_path / "mixed.qgraph"
    QuantumGraph([quantum]).save(path)
    loaded = QuantumGraph.loadQuantum(path, 0)
    assert [(d.dataId, d.id, d.run) for d in loaded.inputs["refcat"]] == [
        (DataId(htm7=1), 11, "refcats"),
        (DataId(htm7=2, extra="x"), None, None),
        (DataId(htm7=3), 13, None),
    ]


@pytest.mark.parametrize("bad", [1.5, None, (1, 2)])
def test_a_data_id_value_that_is_not_int_or_str_is_refused_at_save(tmp_path: Path, bad):
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset, DatasetType

    t = DatasetType("thing", ("visit", "detector"), "X")
    quantum = Quantum("q", DataId(visit=1), {}, {"thing": [Dataset(t, DataId(visit=1, detector=bad))]})
    with pytest.raises(TypeError, match="int and str"):
        QuantumGraph([quantum]).save(tmp_path / "bad.qgraph")
    assert not list(tmp_path.iterdir())


def test_load_quanta_reads_a_repeated_id_once(saved: Path):
    quanta = QuantumGraph.loadQuanta(saved, [3, 4, 3])
    assert [q.id for q in quanta] == [3, 4]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["qg", "--db", "postgresql://al:pw@host/db"], "qg --db 'postgresql://al:***@host/db'"),
        (["qg", "--api-key=abc"], "qg '--api-key=***'"),
        (["qg", "--secret", "abc", "-d", "visit=1"], "qg --secret '***' -d visit=1"),
        (["qg", "--sort-key", "visit"], "qg --sort-key visit"),
        (["qg", "sqlite:///repo/db.sqlite3"], "qg sqlite:///repo/db.sqlite3"),
    ],
)
def test_command_line_redaction_masks_secrets_only(argv: list[str], expected: str):
    from supertask.graph.provenance import redact_command_line

    assert redact_command_line(argv) == expected


def test_two_dataset_types_with_one_name_are_refused_at_save(tmp_path: Path):
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset, DatasetType

    a = DatasetType("thing", ("visit",), "NumpyArray")
    b = DatasetType("thing", ("visit",), "Table")
    quanta = [
        Quantum("q1", DataId(visit=1), {"thing": [Dataset(a, DataId(visit=1))]}, {}),
        Quantum("q2", DataId(visit=2), {"thing": [Dataset(b, DataId(visit=2))]}, {}),
    ]
    with pytest.raises(ValueError, match="two different dataset types are both named 'thing'"):
        QuantumGraph(quanta).save(tmp_path / "bad.qgraph")


def test_datasets_with_empty_data_ids_round_trip(tmp_path: Path):
    from supertask.repo.dataid import DataId
    from supertask.repo.dataset import Dataset, DatasetType

    schema = DatasetType("src_schema", (), "Table")
    quanta = [
        Quantum("init", DataId(), {}, {"src_schema": [Dataset(schema, DataId())]}),
        Quantum("use", DataId(visit=1), {"src_schema": [Dataset(schema, DataId())] * 2}, {}),
    ]
    path = tmp_path / "empty-ids.qgraph"
    QuantumGraph(quanta).save(path)
    loaded = QuantumGraph.load(path)
    assert loaded[0].dataId == DataId() and loaded[0].outputs["src_schema"][0].dataId == DataId()
    assert len(loaded[1].inputs["src_schema"]) == 2
    assert loaded[1].inputs["src_schema"][0].creator is loaded[0]
