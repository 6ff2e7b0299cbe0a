"""storage.write_json: the bytes of `json.dumps(indent=4)`, whichever encoder makes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balanced_batches.io.files import write_json

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
FLAT_RECORDS = st.dictionaries(st.text(max_size=8), st.dictionaries(st.text(max_size=8), SCALARS))
ANY_JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner)
)


@settings(max_examples=300, deadline=None)
@given(
    data=FLAT_RECORDS | ANY_JSON | st.dictionaries(st.text(max_size=4), ANY_JSON),
    sort=st.booleans(),
)
def test_write_json_writes_what_json_dumps_with_indent_4_gives(
    tmp_path_factory: pytest.TempPathFactory, data: object, sort: bool
) -> None:
    directory = tmp_path_factory.mktemp("json")
    path = directory / "out.json"
    write_json(path, data, sort_keys=sort)
    assert path.read_text() == json.dumps(data, sort_keys=sort, indent=4)
    assert [p.name for p in directory.iterdir()] == ["out.json"]


def test_counts_json_shape_round_trips(tmp_path: Path) -> None:
    counts = {
        f"file{i}.root": {"path": f"/data/file{i}.root", "process": "TT", "pileup": "PU200"}
        | {f"region{r}": i * r for r in range(300)}
        for i in range(20)
    }
    write_json(tmp_path / "counts.json", counts)
    text = (tmp_path / "counts.json").read_text()
    assert text == json.dumps(counts, sort_keys=True, indent=4)
    assert json.loads(text) == counts
