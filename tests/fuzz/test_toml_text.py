"""The fuzzers' TOML writer: what it writes parses back to the same data, so a mutation is the one intended."""

from __future__ import annotations

import math
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz import toml_text
from tests.fuzz.inputs import CONFIG_TEXT, ROSTER_TEXT, SITE_TEXT


def test_repo_files_round_trip() -> None:
    for text in (SITE_TEXT, ROSTER_TEXT, CONFIG_TEXT):
        doc = tomllib.loads(text)
        assert tomllib.loads(toml_text.dumps(doc)) == doc


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


values = st.recursive(
    st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text() | st.booleans() | st.datetimes() | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), values, max_size=4))
def test_any_document_round_trips(doc: dict[str, object]) -> None:
    assert same(tomllib.loads(toml_text.dumps(doc)), doc)
