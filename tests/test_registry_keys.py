"""The canonical data-ID key of the dataset table (property tests; no database)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supertask.repo.registry import data_id_key

values = st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=12))
data_ids = st.dictionaries(st.sampled_from(["instrument", "visit", "detector", "band", "patch"]), values)


@given(data_ids)
def test_key_does_not_depend_on_item_order(dataId):
    assert data_id_key(dataId) == data_id_key(dict(reversed(list(dataId.items()))))


@given(data_ids, data_ids)
def test_different_data_ids_get_different_keys(a, b):
    if a != b:
        assert data_id_key(a) != data_id_key(b)
