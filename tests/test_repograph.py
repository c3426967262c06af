"""RepoGraph and makeRepoGraph: the joined selection, units, datasets, gathering, explanations."""

from __future__ import annotations

import pytest
from conftest_repo import populate

from supertask.repo.butler import Butler
from supertask.repo.dataid import DataId
from supertask.repo.dataset import DatasetType
from supertask.repo.repograph import RepoGraph, makeRepoGraph
from supertask.repo.units import Unit

RAW = DatasetType("raw", ("instrument", "visit", "detector"), "NumpyArray")
CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "NumpyArray")
COADD = DatasetType("coadd", ("skymap", "tract", "patch", "band"), "NumpyArray")
REFCAT = DatasetType("refcat", (), "StructuredDataDict")


@pytest.fixture(scope="module")
def butler(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph") / "repo"
    Butler.create(root)
    writer = Butler(root, run="raw")
    populate(writer.registry)
    writer.registry.registerDatasetType(RAW)
    records = [
        {"dataId": {"instrument": "Cam", "visit": v, "detector": d}, "path": f"raw/{v}/{d}", "checksum": "c"}
        for v in range(6)
        for d in range(4)
        if (v, d) != (3, 2)  # one raw is missing
    ]
    writer.registry.insertDatasets(RAW, "raw", records)
    return Butler(root, collections=["raw"])


def vd(visit: int, detector: int) -> DataId:
    return DataId(instrument="Cam", visit=visit, detector=detector)


def test_rows_are_the_selection_over_all_units(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3) AND detector < 3")
    # Visits 2 and 3 overlap patch 1 only; the missing raw (3, 2) removes one row.
    assert {(r["visit"], r["detector"], r["patch"], r["band"]) for r in graph.rows} == {
        (2, 0, 1, "g"),
        (2, 1, 1, "g"),
        (2, 2, 1, "g"),
        (3, 0, 1, "r"),
        (3, 1, 1, "r"),
    }
    assert graph.dataIds(["patch", "band"]) == [
        DataId(skymap="sky", tract=0, patch=1, band="g"),
        DataId(skymap="sky", tract=0, patch=1, band="r"),
    ]


def test_units_carry_fields_datasets_and_related_units(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 1")
    assert {u.dataId["detector"] for u in graph.units["detector"]} == {0, 1, 2, 3}
    visit = graph.getUnit("visit", {"instrument": "Cam", "visit": 1, "detector": 0})
    assert isinstance(visit, Unit)
    assert visit.fields["exposure_time"] == 10.0
    assert visit.fields["physical_filter"] == "R"
    assert {d.dataId["detector"] for d in visit.datasets["raw"]} == {0, 1, 2, 3}
    assert {u.dataId["detector"] for u in visit.related["detector"]} == {0, 1, 2, 3}
    assert {u.dataId["instrument"] for u in visit.related["instrument"]} == {"Cam"}


def test_needed_datasets_are_resolved(butler):
    graph = makeRepoGraph(butler, [RAW], [], "visit = 3")
    assert sorted(d.dataId["detector"] for d in graph.datasets["raw"]) == [0, 1, 3]
    assert all(d.run == "raw" and d.id is not None for d in graph.datasets["raw"])


def test_add_dataset_links_the_future_dataset_to_its_units(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    ds = graph.addDataset(CALEXP, vd(4, 1))
    assert ds in graph.datasets["calexp"]
    assert graph.addDataset(CALEXP, instrument="Cam", visit=4, detector=1) is ds
    assert ds in graph.getUnit("detector", vd(4, 1)).datasets["calexp"]
    assert ds.id is None


def test_add_datasets_in_bulk_matches_one_call_per_data_id(butler):
    bulk = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    single = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    ids = [vd(4, d) for d in range(4)]
    added = bulk.addDatasets(CALEXP, ids)
    expected = [single.addDataset(CALEXP, d) for d in ids]
    assert [d.dataId for d in added] == [d.dataId for d in expected] == ids
    for d in range(4):
        linked = bulk.getUnit("detector", vd(4, d)).datasets["calexp"]
        assert {x.dataId for x in linked} == {
            x.dataId for x in single.getUnit("detector", vd(4, d)).datasets["calexp"]
        }
    assert len(bulk.getUnit("visit", {"instrument": "Cam", "visit": 4}).datasets["calexp"]) == 4


def test_add_datasets_returns_existing_handles_and_dedupes_within_a_call(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    first = graph.addDataset(CALEXP, vd(4, 1))
    again, twice, other = graph.addDatasets(CALEXP, [vd(4, 1), vd(4, 2), vd(4, 2)])[0:3]
    assert again is first
    assert twice is other
    assert len(graph.datasets["calexp"]) == 2


def test_add_datasets_dedupes_repeats_in_the_first_call_of_a_type(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    first, other, again = graph.addDatasets(CALEXP, [vd(4, 2), vd(4, 1), vd(4, 2)])
    assert again is first and other is not first
    assert [d.dataId for d in (first, other)] == [vd(4, 2), vd(4, 1)]
    assert graph.datasetIndex("calexp") == {vd(4, 2): first, vd(4, 1): other}
    assert graph.getUnit("detector", vd(4, 2)).datasets["calexp"] == {first}


def test_needed_datasets_the_registry_does_not_return_are_left_out(butler, monkeypatch):
    registry = butler.registry
    query = registry.queryDataIdValuesWithDatasets

    def without_detector_1(*args, **kwargs):
        keys, rows, found = query(*args, **kwargs)
        for f in found.values():
            f.ids = {v: dsId for v, dsId in f.ids.items() if 1 not in v}
        return keys, rows, found

    monkeypatch.setattr(registry, "queryDataIdValuesWithDatasets", without_detector_1)
    graph = makeRepoGraph(butler, [RAW], [], "visit = 4")
    assert sorted(d.dataId["detector"] for d in graph.datasets["raw"]) == [0, 2, 3]
    assert all(d.run == "raw" and d.id is not None for d in graph.datasets["raw"])
    assert graph.datasetIndex("raw").keys() == {vd(4, 0), vd(4, 2), vd(4, 3)}


def test_needed_datasets_come_from_the_planning_query_not_a_second_read(butler, monkeypatch):
    expected = {
        d.dataId: (d.id, d.run) for d in butler.registry.queryDatasets(RAW, ["raw"], where="visit = 4")
    }

    def refuse(*args, **kwargs):
        raise AssertionError("the planning query found the raws already")

    monkeypatch.setattr(butler.registry, "findDatasetValues", refuse)
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    assert {d: (ds.id, ds.run) for d, ds in graph.datasetIndex("raw").items()} == expected
    assert len(expected) == 4


def test_the_projection_onto_found_datasets_keys_comes_from_them_not_from_the_rows(butler, monkeypatch):
    # With coadds the rows are wider than raw's keys; the raws the planning query found
    # are the rows' projection onto those keys, so no pass over the rows makes it.
    projected = []
    project = RepoGraph._projection

    def recording(self, keys):
        projected.append(keys)
        return project(self, keys)

    monkeypatch.setattr(RepoGraph, "_projection", recording)
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3)")
    rawKeys = ("detector", "instrument", "visit")
    assert rawKeys not in projected and graph._rowKeys != rawKeys
    made = graph.dataIds(RAW.units)
    graph._projections.clear()  # the same data IDs, in the same order, from the rows
    assert (
        made == graph.dataIds(RAW.units) == sorted({vd(v, d) for v in (2, 3) for d in range(4)} - {vd(3, 2)})
    )
    assert [hash(d) for d in made] == [hash(DataId(d)) for d in made]
    assert graph.datasetIndex("raw").keys() == set(made)
    assert all(graph.datasetIndex("raw")[d].dataId is d for d in made)


def test_needed_global_datasets_are_found_by_the_planning_query(tmp_path, monkeypatch):
    Butler.create(tmp_path / "repo")
    writer = Butler(tmp_path / "repo", run="refs")
    populate(writer.registry)
    writer.registry.registerDatasetType(REFCAT)
    (refcat,) = writer.registry.insertDatasets(REFCAT, "refs", [{"dataId": {}, "path": "r", "checksum": "c"}])
    butler = Butler(tmp_path / "repo", collections=["refs"])
    # Without units to query, the registry is asked for the datasets.
    (alone,) = makeRepoGraph(butler, [REFCAT], [], None).datasets["refcat"]
    assert (alone.id, alone.run) == (refcat.id, "refs")
    monkeypatch.setattr(butler.registry, "findDatasetValues", None)  # never called
    graph = makeRepoGraph(butler, [REFCAT], [CALEXP], "visit = 4")
    (found,) = graph.datasets["refcat"]
    assert (found.id, found.run, found.dataId) == (refcat.id, "refs", DataId())
    assert len(graph.rows) == 4


def test_add_datasets_checks_data_ids_without_exactly_the_keys(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    (ds,) = graph.addDatasets(CALEXP, [{"instrument": "Cam", "visit": 4, "detector": 1, "band": "g"}])
    assert ds.dataId == vd(4, 1) and type(ds.dataId) is DataId
    with pytest.raises(ValueError, match="lacks 'detector'"):
        graph.addDatasets(CALEXP, [DataId(instrument="Cam", visit=4)])


def test_related_data_ids_are_not_sliced_by_the_expression(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit = 2 AND detector = 0")
    (patch,) = graph.dataIds(["patch"])
    related = graph.relatedDataIds([patch], ["visit", "detector"])
    # Patch 1 is overlapped by visits 2 and 3, all detectors, whatever the expression selected.
    assert related[patch] == sorted(vd(v, d) for v in (2, 3) for d in range(4))


def test_related_data_ids_are_the_same_after_the_lookup_tables_are_released(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit = 2 AND detector = 0")
    (patch,) = graph.dataIds(["patch"])
    before = graph.relatedDataIds([patch], ["visit", "detector"])
    assert graph._interned  # the table that makes related data IDs the graph's own objects
    graph.releaseLookupTables()
    assert not graph._interned
    assert graph.relatedDataIds([patch], ["visit", "detector"]) == before
    # the graph's own data ID is still the one handed out after the tables are rebuilt
    (selected,) = graph.dataIds(["instrument", "visit", "detector"])
    (again,) = (d for d in graph.relatedDataIds([patch], ["visit", "detector"])[patch] if d == selected)
    assert again is selected


def test_find_datasets_loads_datasets_outside_the_selection(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 2")
    found = graph.findDatasets("raw", [vd(2, 0), vd(5, 1), vd(3, 2)])
    assert set(found) == {vd(2, 0), vd(5, 1)}  # (3, 2) has no raw
    assert found[vd(5, 1)] in graph.datasets["raw"]
    assert found[vd(2, 0)] is next(d for d in graph.datasets["raw"] if d.dataId == vd(2, 0))


def test_find_dataset_list_is_aligned_with_the_data_ids_asked_and_loads_the_rest(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 2")
    asked = [vd(5, 1), vd(2, 0), vd(3, 2), vd(5, 1)]  # outside, inside, none, repeated
    found = graph.findDatasetList("raw", asked)
    assert [None if f is None else f.dataId for f in found] == [vd(5, 1), vd(2, 0), None, vd(5, 1)]
    assert found[0] is found[3] and found[0] in graph.datasets["raw"]
    assert found[1] is graph.findDatasets("raw", [vd(2, 0)])[vd(2, 0)]


def test_find_dataset_list_of_the_graphs_own_data_ids_hashes_none_and_other_lists_still_align(
    butler, monkeypatch
):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 2")
    own = graph.dataIds(RAW.units)  # the data IDs the planning query found the raws for, in order
    expected = [graph.findDatasets("raw", [d])[d] for d in own]
    reordered = own[::-1]
    copies = [DataId(dict(d)) for d in own]
    replaced = [*own[:-1], vd(5, 1)]  # as long as the index, one data ID outside it

    def refuse(self):
        raise AssertionError("a data ID was hashed")

    with monkeypatch.context() as m:
        m.setattr(DataId, "__hash__", refuse)
        found = graph.findDatasetList("raw", own)
    assert found == expected and all(f is e for f, e in zip(found, expected, strict=True))
    assert graph.findDatasetList("raw", reordered) == expected[::-1]
    assert [f.dataId for f in graph.findDatasetList("raw", copies)] == copies
    last = graph.findDatasetList("raw", replaced)
    assert last[:-1] == expected[:-1] and last[-1].dataId == vd(5, 1)


def test_find_datasets_accepts_a_generator_and_repeated_data_ids(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 2")
    found = graph.findDatasets("raw", (d for d in [vd(4, 3), vd(4, 3), vd(3, 2)]))
    assert list(found) == [vd(4, 3)]


def test_global_needed_dataset_keeps_rows_when_present(butler):
    refs = Butler(butler.root, run="refs")
    refs.registry.registerDatasetType(REFCAT)
    refs.registry.insertDatasets(REFCAT, "refs", [{"dataId": {}, "path": "refcat.json", "checksum": "x"}])
    inputs = Butler(butler.root, collections=["raw", "refs"])
    graph = makeRepoGraph(inputs, [RAW, REFCAT], [CALEXP], "visit = 0")
    assert len(graph.rows) == 4
    assert [d.dataId for d in graph.datasets["refcat"]] == [DataId()]
    empty = makeRepoGraph(butler, [RAW, REFCAT], [CALEXP], "visit = 0")  # refs not searched
    assert empty.rows == []
    assert "no refcat dataset in collections ['raw']" in empty.explainEmpty()


def test_explain_empty_names_the_constraint_that_removed_every_row(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit > 2 AND band = 'z'")
    assert graph.rows == []
    text = graph.explainEmpty()
    assert (
        "the constraint `band = 'z'` alone matches none of the 24 rows (band values in the repository: 'g', 'r')"
        in text
    )
    assert "`visit > 2` alone" not in text


def test_explain_empty_names_a_missing_dataset(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 3 AND detector = 2")
    assert graph.rows == []
    assert "no raw dataset in collections ['raw'] matches the 1 selected rows" in graph.explainEmpty()


def test_explain_empty_names_an_unregistered_dataset_type(butler):
    flat = DatasetType("flat", ("instrument", "detector"), "NumpyArray")
    graph = makeRepoGraph(butler, [RAW, flat], [CALEXP], None)
    assert "'flat' is not registered" in graph.explainEmpty()


def test_explain_empty_when_terms_only_conflict_together(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 1 AND band = 'g'")
    assert "together they match none" in graph.explainEmpty()


def test_explain_on_a_non_empty_graph_says_so(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 1")
    assert graph.explainEmpty().startswith("the graph is not empty: 4 rows")


def test_rows_view_behaves_like_the_list_of_data_ids(butler):
    graph = makeRepoGraph(butler, [RAW], [COADD], "visit = 2")
    rows = list(graph.rows)
    assert rows and all(type(r) is DataId for r in rows)
    assert graph.rows == rows
    assert graph.rows[0] == rows[0] and graph.rows[-2:] == rows[-2:]
    assert len(graph.rows) == len(rows) == len(set(rows))
    assert rows == sorted(rows, key=DataId.sort_key)


def test_projections_are_distinct_sorted_and_cached(butler):
    graph = makeRepoGraph(butler, [RAW], [COADD], None)
    visits = graph.dataIds(["visit"])
    assert visits == sorted({r.subset(("instrument", "visit")) for r in graph.rows}, key=DataId.sort_key)
    assert graph.dataIds(["visit"]) is visits
    assert {u.dataId for u in graph.units["visit"]} == set(visits)


def test_sort_value_tuples_orders_mixed_types_like_data_ids():
    from supertask.repo.units import sort_data_ids, sort_value_tuples

    rows = [("a", 2), ("a", "x"), ("b", 1), ("a", 1)]
    ids = sort_data_ids([DataId(k=k, v=v) for k, v in rows])
    assert sort_value_tuples(("k", "v"), rows) == [(d["k"], d["v"]) for d in ids]


def test_projections_with_constant_key_columns_equal_those_of_every_row(butler):
    # One instrument and one skymap: a detector's or a visit's keys vary in one column
    # only, and their projection is made from that column's values (no tuple per row).
    # Every shape must give the distinct sorted tuples of all rows.
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], None)
    rows = list(graph._rowValues)
    keysets = [
        ("detector", "instrument"),
        ("instrument", "visit"),
        ("instrument",),
        ("patch", "skymap", "tract"),
        ("instrument", "skymap"),
        ("detector", "instrument", "visit"),
        ("band", "detector", "instrument"),
    ]
    for keys in keysets:
        graph._projections.clear()
        idx = [graph._rowKeys.index(k) for k in keys]
        expected = sorted({tuple(row[i] for i in idx) for row in rows})
        values, dataIds = graph._projection(keys)
        assert values == expected, keys
        assert [tuple(d._values.values()) for d in dataIds] == expected and list(dataIds[0]) == list(keys)
    assert {graph._rowKeys.index(k) for k in ("instrument", "skymap")} <= graph._constantColumns
    assert all(len({row[i] for row in rows}) == 1 for i in graph._constantColumns)
    graph._rowValues.append(
        tuple("Other" if k == "instrument" else v for k, v in zip(graph._rowKeys, rows[0], strict=True))
    )
    graph._constantColumns.clear()  # (remembered while the rows stay as they are)
    graph._projections.clear()
    assert graph._projection(("detector", "instrument"))[0] == sorted(
        {
            (row[graph._rowKeys.index("detector")], row[graph._rowKeys.index("instrument")])
            for row in graph._rowValues
        }
    )


def test_scattered_value_tuples_sort_as_sort_value_tuples_does():
    import random

    from supertask.repo.units import sort_scattered_value_tuples, sort_value_tuples

    rng = random.Random(5)
    keys = ("detector", "instrument", "visit")
    rows = list(
        {(rng.randrange(20), rng.choice(["Cam", "Other", "Cam2"]), rng.randrange(500)) for _ in range(3000)}
    )
    rng.shuffle(rows)
    assert sort_scattered_value_tuples(keys, rows) == sort_value_tuples(keys, rows) == sorted(rows)
    assert sort_scattered_value_tuples(keys, dict.fromkeys(rows)) == sorted(rows)  # the found datasets' keys
    mixed = [("a", 2), ("a", "x"), ("b", 1), ("a", 1)]  # (falls back, same order)
    assert sort_scattered_value_tuples(("k", "v"), mixed) == sort_value_tuples(("k", "v"), mixed)
    assert sort_scattered_value_tuples(keys, []) == [] and sort_scattered_value_tuples((), [()]) == [()]
    one = [(d, "Cam", v) for d, _, v in rows]  # (a constant column is not sorted by: same order)
    assert sort_scattered_value_tuples(keys, one, constant=[1]) == sorted(one)


def test_a_dropped_repo_graph_is_freed_without_the_cyclic_collector(butler):
    import gc
    import weakref

    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 1")
    visit = graph.getUnit("visit", {"instrument": "Cam", "visit": 1, "detector": 0})
    alive = weakref.ref(graph)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        del graph
        # Freed by reference counting alone: a 10^6-row graph must not wait for a full collection.
        assert alive() is None
    finally:
        if was_enabled:
            gc.enable()
    with pytest.raises(RuntimeError, match="RepoGraph no longer exists"):
        visit.related  # noqa: B018


def test_unit_datasets_asked_before_and_after_datasets_are_added_agree(butler):
    early = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    late = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    detector = vd(4, 2)
    # Linked on first use: asking before the calexps exist, then adding, keeps the links current.
    assert {d.name for d in early.getUnit("detector", detector).datasets["raw"]} == {"raw"}
    assert "calexp" not in early.getUnit("detector", detector).datasets
    for graph in (early, late):
        graph.addDatasets(CALEXP, [vd(4, d) for d in range(4)])
        graph.addDataset(CALEXP, vd(4, 1))
    for graph in (early, late):
        unit = graph.getUnit("detector", detector)
        assert {x.dataId for x in unit.datasets["calexp"]} == {detector}
        assert {x.dataId for x in unit.datasets["raw"]} == {detector}
        visit = graph.getUnit("visit", {"instrument": "Cam", "visit": 4})
        assert len(visit.datasets["calexp"]) == 4
        assert len(graph.datasets["calexp"]) == 4


def test_collections_given_to_make_repo_graph_override_the_butlers(butler, tmp_path):
    graph = makeRepoGraph(Butler(butler.root), [RAW], [CALEXP], "visit = 3", collections=["raw"])
    assert {d.dataId["detector"] for d in graph.datasets["raw"]} == {0, 1, 3}
    with pytest.raises(ValueError, match="collections="):
        makeRepoGraph(Butler(butler.root), [RAW], [CALEXP], "visit = 3")


def test_a_selection_over_max_rows_is_refused_while_fetching(butler):
    from supertask.repo.registry import RowLimitError

    assert len(makeRepoGraph(butler, [RAW], [CALEXP], "visit = 3", maxRows=3).rows) == 3
    with pytest.raises(RowLimitError):
        makeRepoGraph(butler, [RAW], [CALEXP], "visit = 3", maxRows=2)


def test_data_ids_made_in_bulk_equal_and_hash_as_those_of_the_constructor():
    keys = ("detector", "instrument", "visit")
    made = DataId._many_from_sorted(keys, [(1, "Cam", 2), (0, "Cam", 3)])
    assert made == [vd(2, 1), vd(3, 0)]
    assert [hash(d) for d in made] == [hash(vd(2, 1)), hash(vd(3, 0))]
    assert list(made[0]) == list(keys) and made[0] in {vd(2, 1)}


def test_data_ids_made_in_bulk_hold_the_same_dictionaries_as_dict_of_zip():
    # The dictionaries come from a generated dict display: same items, same key order,
    # whatever the key text (quotes, backslashes), and value sequences that are not tuples.
    keys = ("a'b", 'c"d', "e\\f")
    values = [(1, "x", 2.5), [3, "y", None], (0, "'", "\\")]
    made = DataId._many_from_sorted(keys, iter(values))
    for dataId, v in zip(made, values, strict=True):
        assert type(dataId._values) is dict
        assert list(dataId._values.items()) == list(zip(keys, v, strict=True))
        assert hash(dataId) == hash(tuple(v)) == hash(DataId._from_sorted(dict(zip(keys, v, strict=True))))
    assert DataId._many_from_sorted((), [(), ()]) == [DataId(), DataId()]
    assert DataId._many_from_sorted(keys, []) == []


def test_data_ids_made_in_bulk_refuse_a_tuple_of_another_width():
    with pytest.raises(ValueError, match="must have 2 values each"):
        DataId._many_from_sorted(("detector", "visit"), [(1, 2), (1, 2, 3)])
    with pytest.raises(ValueError, match="must have 2 values each"):
        DataId._many_from_sorted(("detector", "visit"), [(1,)])


def test_projections_are_distinct_and_sorted_whatever_the_row_order(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3)")
    graph._rowValues.reverse()  # projections must not depend on the database's order
    graph._projections.clear()
    ids = graph.dataIds(["visit", "detector"])
    assert ids == sorted(
        {vd(v, d) for v in (2, 3) for d in range(4) if (v, d) != (3, 2)}, key=DataId.sort_key
    )


def test_a_projection_made_from_a_smaller_cached_one_equals_the_projection_of_the_rows(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3)")
    direct = {units: list(graph.dataIds(units)) for units in (("visit",), ("instrument",), ("tract",))}
    graph._projections.clear()
    graph._rowValues *= 4  # (repeated rows: many more rows than the cached projection below has)
    graph.dataIds(["visit", "detector", "patch"])  # the cached projection the others come from
    for units, expected in direct.items():
        assert graph._coveringProjection(graph.universe.expand(units)) is not None
        assert graph.dataIds(units) == expected


def test_released_rows_keep_their_count_and_the_projections_already_made(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3) AND detector < 3")
    patches = graph.dataIds(["patch", "band"])
    count = len(graph.rows)
    graph.releaseRows()
    assert not graph._rowValues  # the row tuples are gone
    assert len(graph.rows) == count > 0 and graph.dataIds(["patch", "band"]) is patches
    assert f"RepoGraph({count} rows" in repr(graph)


def test_reading_released_rows_or_a_new_projection_of_them_says_so(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3) AND detector < 3")
    graph.releaseRows()
    with pytest.raises(RuntimeError, match="released after planning"):
        list(graph.rows)
    with pytest.raises(RuntimeError, match="released after planning"):
        graph.rows[0]
    with pytest.raises(RuntimeError, match="released after planning"):
        graph.dataIds(["detector", "patch"])  # (the units alone were projected by makeRepoGraph)


def test_released_datasets_are_not_looked_up_again_but_refused(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 2")
    assert graph.findDatasets("raw", [vd(2, 0)])
    graph.releaseDatasets()
    assert not dict.items(graph._datasetIndex)  # the index is gone
    for lookup in (
        lambda: graph.findDatasets("raw", [vd(2, 0)]),
        lambda: graph.addDatasets(CALEXP, [vd(2, 0)]),
        lambda: graph.datasets,
    ):
        with pytest.raises(RuntimeError, match="released once its quanta were defined"):
            lookup()
    assert "RepoGraph(" in repr(graph)


def test_find_dataset_list_of_exact_data_ids_matches_the_checked_look_up(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 2")
    asked = [vd(5, 1), vd(2, 0), vd(3, 2), vd(5, 1)]  # outside, inside, none, repeated
    exact = graph.findDatasetList("raw", asked, exact=True)
    assert exact == graph.findDatasetList("raw", asked)
    assert exact[0] is exact[3] and exact[2] is None and exact[1].dataId == vd(2, 0)


def test_exact_is_ignored_for_a_type_whose_units_are_not_its_expanded_keys(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    short = DatasetType("calexpShort", ("visit", "detector"), "NumpyArray")  # expands with instrument
    # Data IDs over exactly the type's units still lack a key of the graph's: checked, not used as they are.
    with pytest.raises(ValueError, match="lacks 'instrument'"):
        graph.addDatasets(short, [DataId(visit=4, detector=1)], exact=True)
    (ds,) = graph.addDatasets(short, [vd(4, 1)], exact=True)
    assert graph.findDatasetList("calexpShort", [vd(4, 1)], exact=True) == [ds]
    with pytest.raises(KeyError, match="no value for unit 'instrument'"):
        graph.findDatasetList("calexpShort", [DataId(visit=4, detector=1)], exact=True)


def test_add_datasets_of_exact_data_ids_matches_the_checked_call(butler):
    exact = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    checked = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 4")
    ids = [vd(4, 2), vd(4, 1), vd(4, 2)]
    first, other, again = exact.addDatasets(CALEXP, ids, exact=True)
    assert again is first and other is not first
    assert [d.dataId for d in (first, other, again)] == [d.dataId for d in checked.addDatasets(CALEXP, ids)]
    assert exact.datasetIndex("calexp") == {vd(4, 2): first, vd(4, 1): other}


def test_keys_a_planned_view_promises_are_those_of_the_data_ids_it_hands_out(butler):
    from supertask.graph.quanta import PlannedRepoGraph

    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3)")

    class Task:
        label = "calibrate"
        quantumUnits = ("visit", "detector")  # expanded by the graph with instrument

    selected = set(graph.dataIds(Task.quantumUnits))
    view = PlannedRepoGraph(graph, {"calibrate": selected}, {}, {})
    dataIds, keys = view._quantumDataIdsAndKeys(Task)
    assert keys == {"instrument", "visit", "detector"} and all(set(d) == keys for d in dataIds)
    related = view.related(graph.dataIds(["patch"]), ["visit", "detector"])
    promised = view._relatedKeys(["visit", "detector"])
    assert promised == {"instrument", "visit", "detector"}
    assert related and all(set(d) == promised for ids in related.values() for d in ids)
    # Planning added quanta outside the graph's projection: no promise (the caller checks).
    selected.add(vd(5, 0))
    assert view._quantumDataIdsAndKeys(Task) == (sorted(selected), None)
    assert PlannedRepoGraph(graph, {}, {}, {}, expand_inputs=False)._relatedKeys(["visit"]) is None


def test_related_look_up_sends_only_restrictions_that_leave_something_out(butler, monkeypatch):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3)")
    patches = graph.dataIds(["patch"])  # the repository's only skymap and tract, some of its patches
    expected = {p: graph.relatedDataIds([p], ["visit", "detector"])[p] for p in patches}
    sent = []
    query = graph.registry.queryRelatedDataIdValues

    def spy(*args, **kwargs):
        sent.append(set(kwargs["restrict"]))
        return query(*args, **kwargs)

    monkeypatch.setattr(graph.registry, "queryRelatedDataIdValues", spy)
    assert graph.relatedDataIds(patches, ["visit", "detector"]) == expected
    assert sent == [{"patch"}]
    assert graph._usefulRestrictions({"visit": {2, 3}, "skymap": {"sky"}}) == {"visit": {2, 3}}
    # not a unit of the registry: the restriction is kept as it is
    assert graph._usefulRestrictions({"nosuchunit": {1}}) == {"nosuchunit": {1}}


def _graph_of_rows(butler, rows):
    """A RepoGraph over given rows (band, detector, instrument, patch, skymap, tract, visit)."""
    keys = ("band", "detector", "instrument", "patch", "skymap", "tract", "visit")
    return RepoGraph(butler.registry, ["raw"], None, keys, rowKeys=keys, rowValues=list(rows))


def test_projections_prepared_together_are_those_of_the_rows(butler):
    rows = [(b, d, "Cam", p, "sky", 0, v) for b, v in (("g", 1), ("r", 2)) for p in (1, 2) for d in range(4)]
    plain, prepared = _graph_of_rows(butler, rows), _graph_of_rows(butler, rows)
    sets = [("patch", "band"), ("tract", "band"), ("visit", "tract")]
    prepared._prepareProjections(sets)
    # one pass over the rows made all three (four distinct tuples of their union for 16 rows)
    assert set(prepared._projections) == {prepared.universe.expand(units) for units in sets}
    for units in sets:
        assert prepared.dataIds(units) == plain.dataIds(units)


def test_projections_are_not_prepared_from_a_union_nearly_as_large_as_the_rows(butler):
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit > 0")
    before = set(graph._projections)
    sets = [("detector", "patch"), ("visit", "tract")]  # their union: all keys but band, one tuple per row
    graph._prepareProjections(sets)
    assert set(graph._projections) == before
    plain = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit > 0")
    for units in sets:
        assert graph.dataIds(units) == plain.dataIds(units)


def test_default_define_quanta_works_over_a_subclass_whose_overrides_lack_exact(butler):
    from supertask.graph.quanta import PlannedRepoGraph, define_quanta_by_units

    class Mine(RepoGraph):
        def addDatasets(self, datasetType, dataIds):  # overrides of its own, without ``exact``
            return super().addDatasets(datasetType, dataIds)

        def findDatasetList(self, typeName, dataIds):
            return super().findDatasetList(typeName, dataIds)

    class Task:
        label = "calibrate"
        quantumUnits = ("instrument", "visit", "detector")

        def getDatasetClasses(self):
            return {"inputs": {"raw": RAW}, "outputs": {"calexp": CALEXP}}

    graph = makeRepoGraph(butler, [RAW], [CALEXP], "visit = 2")
    graph.__class__ = Mine
    view = PlannedRepoGraph(graph, {"calibrate": set(graph.dataIds(Task.quantumUnits))}, {}, {})
    quanta = define_quanta_by_units(Task(), view)
    assert [q.dataId for q in quanta] == [vd(2, d) for d in range(4)]
    assert [q.outputs["calexp"][0].dataId for q in quanta] == [q.inputs["raw"][0].dataId for q in quanta]


def _related_by_rows(graph, dataIds, toUnits):
    """The reference: every related tuple from the registry's plain rows, as sorted data IDs."""
    toKeys = graph.universe.expand(toUnits)
    fromKeys = tuple(dataIds[0].keys())
    keys, rows = graph.registry.queryDataIdValues({*fromKeys, *toKeys}, ordered=False)
    expected = {d: [] for d in dataIds}
    for row in rows:
        values = dict(zip(keys, row, strict=True))
        d = DataId({k: values[k] for k in fromKeys})
        if d in expected:
            expected[d].append(DataId({k: values[k] for k in toKeys}))
    return {d: sorted(ids) for d, ids in expected.items()}


def test_warp_look_up_by_visit_prefix_hands_out_the_graphs_own_data_ids(butler):
    # (visit, patch) -> (visit, detector): one to key (detector) is not a from key, so the
    # graph's data IDs are found per (instrument, visit) prefix (`_internedByGroup`).
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit IN (2, 3)")
    warps = graph.dataIds(["visit", "patch"])
    calexps = {d: d for d in graph.dataIds(["visit", "detector"])}
    related = graph.relatedDataIds(warps, ["visit", "detector"])
    assert related == _related_by_rows(graph, warps, ["visit", "detector"])
    assert graph._internedGroups and not graph._interned  # (the two-level tables were used)
    handed = [d for ids in related.values() for d in ids]
    own = [d for d in handed if d in calexps]
    assert len(own) == len(handed) - 1  # all but (3, 2), which has no raw
    assert all(calexps[d] is d for d in own)  # the graph's own objects


def test_warp_look_up_makes_a_data_id_the_graph_lacks_once_and_shares_it(butler):
    # The expression selected visit 2 only; patch 1 is overlapped by visit 3 as well, whose
    # (visit, detector) data IDs are not the graph's: each is made once, then handed out again.
    graph = makeRepoGraph(butler, [RAW], [CALEXP, COADD], "visit = 2")
    warp = DataId(instrument="Cam", visit=3, skymap="sky", tract=0, patch=1)
    first = graph.relatedDataIds([warp], ["visit", "detector"])[warp]
    assert first == [vd(3, d) for d in range(4)]
    again = graph.relatedDataIds([warp], ["visit", "detector"])[warp]
    assert all(a is b for a, b in zip(first, again, strict=True))
    graph.releaseLookupTables()
    assert not graph._internedGroups
    assert graph.relatedDataIds([warp], ["visit", "detector"])[warp] == first
