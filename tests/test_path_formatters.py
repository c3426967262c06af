"""Per-(dataset type, keys) formatters name a dataset exactly as the one-dataset rules do.

A streamed `bps prepare` formats millions of template paths and logical file names with
`Datastore.path_formatter` and `bps.names.lfn_formatter`; the jobs later find their files
with `Datastore.path` and `bps.names.dataset_lfn`. Any difference, on any value, strands
a job's output.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bps import names
from bps.names import dataset_lfn, lfn_formatter, lfns_formatter
from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.datastore import Datastore, DatastoreError, _clean
from supertask.repo.formatters import get_formatter

UNITS = ("instrument", "visit", "detector", "band", "_odd", "run", "dataId", "a-b", "x y")
values = st.one_of(st.integers(min_value=-(2**63), max_value=2**63), st.text(max_size=10))
data_ids = st.dictionaries(st.sampled_from(UNITS), values, max_size=5)
TEMPLATES = [
    "{run}/{datasetType}/{datasetType}_{dataId}",
    "{run}/{datasetType}/{visit}/{datasetType}_{detector}_{dataId}",
    "{run}/{datasetType:>12}/{visit!s}-{detector:_<4}/{instrument!r}.{dataId}",
    "{run}/x{{literal}}/{datasetType}_{band}",
    "{run}/{datasetType!r}/{dataId}",
    "{run}/{detector[0]}/{dataId}",
]


def reference_path(template: str, datasetType: DatasetType, dataId: dict, run: str) -> str:
    """The rule of `Datastore.path`, written out per dataset as the datastore documents it."""
    mapping = {k: _clean(v) for k, v in dataId.items()}
    mapping["dataId"] = "_".join(f"{k}-{mapping[k]}" for k in sorted(dataId)) or "global"
    mapping["datasetType"] = datasetType.name
    mapping["run"] = run
    return template.format(**mapping) + get_formatter(datasetType.storageClass).extension


def _datastore(tmp_path_factory, template: str) -> Datastore:
    return Datastore(tmp_path_factory.mktemp("root"), {"templates": {"default": template}})


@pytest.mark.parametrize("template", TEMPLATES)
@settings(max_examples=150, deadline=None)
@given(data_id=data_ids, run=st.sampled_from(["run/1", "u/ünï/c", "r{x}"]))
def test_the_formatter_gives_the_template_path_on_any_values(tmp_path_factory, template, data_id, run):
    store = _datastore(tmp_path_factory, template)
    dt = DatasetType("calexp", tuple(data_id), "NumpyArray")
    keys, vals = tuple(data_id), tuple(data_id.values())
    try:
        expected = reference_path(template, dt, data_id, run)
    except (KeyError, IndexError, TypeError) as err:
        with pytest.raises(DatastoreError if isinstance(err, KeyError) else type(err)):
            store.path_formatter(dt, keys)(vals, run)
        return
    assert store.path_formatter(dt, keys)(vals, run) == expected
    assert store.path(dt, DataId(data_id), run) == expected


def test_odd_values_are_cleaned_and_sorted_as_in_the_data_id_text(tmp_path):
    store = Datastore(tmp_path, {"templates": {"default": "{run}/{datasetType}/{visit}/{dataId}"}})
    dt = DatasetType("calexp", ("visit", "instrument", "detector"), "NumpyArray")
    format = store.path_formatter(dt, ("visit", "instrument", "detector"))
    assert format((-3, "Cam/../x y", 7), "r") == "r/calexp/-3/detector-7_instrument-Cam_.._x_y_visit--3.npy"
    assert format((4, "Cam", 0), "r") == "r/calexp/4/detector-0_instrument-Cam_visit-4.npy"


def test_a_template_field_the_keys_lack_is_refused_naming_it_when_formatting(tmp_path):
    store = Datastore(tmp_path, {"templates": {"calexp": "{run}/{tract}/{dataId}"}})
    dt = DatasetType("calexp", ("visit",), "NumpyArray")
    format = store.path_formatter(dt, ("visit",))  # made without complaint: no dataset yet
    with pytest.raises(DatastoreError, match="needs 'tract', which data ID {'visit': 1} lacks"):
        format((1,), "r")


def test_an_empty_data_id_is_global(tmp_path):
    store = Datastore(tmp_path)
    dt = DatasetType("skyMap", (), "StructuredDataDict")
    assert (
        store.path_formatter(dt, ())((), "r")
        == store.path(dt, DataId(), "r")
        == "r/skyMap/skyMap_global.json"
    )


def test_an_unknown_storage_class_is_refused_when_formatting_after_the_template(tmp_path):
    store = Datastore(tmp_path, {"templates": {"calexp": "{run}/{tract}/{dataId}"}})
    format = store.path_formatter(DatasetType("calexp", ("visit",), "NoSuchClass"), ("visit",))
    with pytest.raises(DatastoreError, match="needs 'tract'"):
        format((1,), "r")
    other = store.path_formatter(DatasetType("other", ("visit",), "NoSuchClass"), ("visit",))
    with pytest.raises(KeyError, match="unknown storage class 'NoSuchClass'"):
        other((1,), "r")


@settings(max_examples=300, deadline=None)
@given(
    data_id=data_ids,
    dataset_type=st.one_of(st.sampled_from(["calexp", "_x_", "a b"]), st.text(string.printable, max_size=6)),
)
def test_the_lfn_formatter_gives_the_dataset_lfn_on_any_values(data_id, dataset_type):
    expected = dataset_lfn(dataset_type, data_id)
    assert lfn_formatter(dataset_type, tuple(data_id))(tuple(data_id.values())) == expected


def test_path_keeps_its_formatters_but_follows_a_changed_template_and_still_pickles(tmp_path):
    import pickle

    store = Datastore(tmp_path)
    dt = DatasetType("calexp", ("visit",), "NumpyArray")
    assert store.path(dt, DataId(visit=1), "r") == "r/calexp/calexp_visit-1.npy"
    store.templates["calexp"] = "{run}/v{visit}"
    assert store.path(dt, DataId(visit=1), "r") == "r/v1.npy"
    assert pickle.loads(pickle.dumps(store)).path(dt, DataId(visit=2), "r") == "r/v2.npy"


# -- the formatters of many: each file formatted in C when its values allow, the same text -------------

plain_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.sampled_from(["Cam", "g", "x y", "a_", "_b", "r.1", ""]),
)


@st.composite
def keyed_rows(draw):
    """Data-ID keys and rows of values for them, mostly of the ints and names real IDs hold."""
    keys = tuple(draw(st.lists(st.sampled_from(UNITS), unique=True, max_size=4)))
    row = st.tuples(*[st.one_of(plain_values, values, st.booleans()) for _ in keys])
    return keys, draw(st.lists(row, max_size=6))


@pytest.mark.parametrize("template", TEMPLATES)
@settings(max_examples=100, deadline=None)
@given(keyed=keyed_rows(), run=st.sampled_from(["run/1", "u/ünï/c", "r{x}"]))
def test_the_formatter_of_many_gives_each_template_path_or_refuses_as_one_by_one(
    tmp_path_factory, template, keyed, run
):
    keys, rows = keyed
    store = _datastore(tmp_path_factory, template)
    dt = DatasetType("calexp", keys, "NumpyArray")
    one = store.path_formatter(dt, keys)
    # one RUN for all (the template made once per RUN), and RUNs that differ row by row
    for runs in ([run] * len(rows), [run if i % 2 else "in/{x}" for i in range(len(rows))]):
        try:
            expected = [one(values, r) for values, r in zip(rows, runs, strict=True)]
        except Exception as err:  # noqa: BLE001 - whatever one by one raises, many raises
            with pytest.raises(type(err)):
                store.paths_formatter(dt, keys)(rows, runs)
            continue
        assert store.paths_formatter(dt, keys)(rows, runs) == expected


@settings(max_examples=300, deadline=None)
@given(
    keyed=keyed_rows(),
    dataset_type=st.one_of(
        st.sampled_from(["calexp", "_x_", "a b", "{x}"]), st.text(string.printable, max_size=6)
    ),
)
def test_the_lfn_formatter_of_many_gives_each_dataset_lfn(keyed, dataset_type):
    keys, rows = keyed
    expected = [dataset_lfn(dataset_type, dict(zip(keys, values, strict=True))) for values in rows]
    assert lfns_formatter(dataset_type, keys)(rows) == expected


def test_rows_of_ints_and_plain_names_are_formatted_without_a_call_per_row(tmp_path, monkeypatch):
    """The point of the formatters of many: no Python call per file when the values allow."""
    store = Datastore(tmp_path, {"templates": {"calexp": "{run}/{datasetType}/{visit}/{dataId}"}})
    dt = DatasetType("calexp", ("detector", "instrument", "visit"), "NumpyArray")
    keys = ("detector", "instrument", "visit")
    rows, runs = [(1, "Cam", 12), (2, "Cam", 13)], ["r", "s"]
    expected = [store.path_formatter(dt, keys)(v, r) for v, r in zip(rows, runs, strict=True)]
    lfn_expected = [lfn_formatter("calexp", keys)(v) for v in rows]

    def refuse(*args):
        raise AssertionError("formatted one by one")

    monkeypatch.setattr(Datastore, "path_formatter", lambda self, *a: refuse)
    monkeypatch.setattr(names, "lfn_formatter", lambda *a: refuse)
    assert (
        store.paths_formatter(dt, keys)(rows, runs)
        == expected
        == [
            "r/calexp/12/detector-1_instrument-Cam_visit-12.npy",
            "s/calexp/13/detector-2_instrument-Cam_visit-13.npy",
        ]
    )
    assert names.lfns_formatter("calexp", keys)(rows) == lfn_expected
    with pytest.raises(AssertionError, match="one by one"):  # a name the lfn changes: row by row
        names.lfns_formatter("calexp", keys)([(1, "Ca m", 12)])
