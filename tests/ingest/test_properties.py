"""Whatever the delivery order and duplication, every interval count is applied exactly once; whatever the
garbage, nothing crashes, every rejection has a reason and no good message is lost."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.values import Reading
from ingest.pipeline import Ingestor
from tests.fuzz import targets
from tests.fuzz.inputs import IngestCase, ingest_cases, messages
from tests.ingest.helpers import T0, count, site_with_area, total

SITE = site_with_area()


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[int]]:
    """n messages, seq 1 first, then the rest reordered (bounded displacement) with some duplicated."""
    n = draw(st.integers(2, 40))
    shift = draw(st.lists(st.integers(0, 6), min_size=n - 1, max_size=n - 1))
    order = [s for _, s in sorted((i + d, i + 2) for i, d in enumerate(shift))]
    dups = draw(st.lists(st.sampled_from(order), max_size=8))
    for d in dups:
        order.insert(draw(st.integers(order.index(d), len(order))), d)
    return n, [1, *order]


@settings(max_examples=200, deadline=None)
@given(deliveries(), st.floats(10, 300), st.booleans())
def test_interval_counts_applied_exactly_once(case: tuple[int, list[int]], lateness: float, tick: bool) -> None:
    n, order = case
    ing = Ingestor(SITE, lateness_s=lateness, max_future_s=1e6)
    out: list[Reading] = []
    for k, seq in enumerate(order):
        now = T0 + 60 * k + 5
        t, p = count("seg1-west", seq, T0 + 60 * seq, seq, 1)
        out += ing.feed(t, p, now)
        if tick:
            out += ing.expire(now)
    out += ing.flush()
    assert sorted(r.seq for r in out) == list(range(1, n + 1))
    assert sum(r.inflow for r in out) == n * (n + 1) // 2
    s = ing.stats
    assert s.duplicates == len(order) - n and s.held == 0
    assert s.rejected == ({"duplicate": s.duplicates} if s.duplicates else {})


@settings(max_examples=200, deadline=None)
@given(deliveries(), st.floats(10, 300))
def test_totals_never_double_count(case: tuple[int, list[int]], lateness: float) -> None:
    n, order = case
    ing = Ingestor(SITE, lateness_s=lateness, max_future_s=1e6)
    out: list[Reading] = []
    for k, seq in enumerate(order):
        t, p = total("seg1-east", seq, T0 + 60 * seq, 10 * seq, 3 * seq)
        out += ing.feed(t, p, T0 + 60 * k + 5)
    out += ing.flush()
    # Whatever was dropped as too late, the deltas add up to exactly the change of the totals.
    assert all(r.inflow >= 0 and r.outflow >= 0 for r in out)
    assert sum(r.outflow for r in out) == 10 * (n - 1)  # reversed counter: in_total is people leaving
    assert sum(r.inflow for r in out) == 3 * (n - 1)
    assert ing.stats.resets == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(messages())
def test_any_message_is_a_valid_message_or_a_rejection_with_a_reason(case: tuple[str, bytes]) -> None:
    """Arbitrary bytes, deep or oversized JSON, NaN and huge numbers, strings for numbers, unknown fields,
    topics with wildcards, control characters or the wrong depth (tests/fuzz/inputs.py): the decoder returns
    a message that passes every contract check, or a rejection with a known reason and a one-line detail."""
    targets.payload(case)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ingest_cases())
def test_garbage_never_crashes_loses_nothing_and_every_rejection_has_a_reason(case: IngestCase) -> None:
    """Garbage woven through a clean stream: every message is counted as accepted or rejected with a reason,
    every Reading released is valid, and every clean message comes out exactly once."""
    targets.ingest(case)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(timezones=st.none() | st.timezones()) | st.floats(allow_nan=False) | st.integers(),
    st.sampled_from(["count", "total"]),
)
def test_any_timestamp_is_accepted_or_rejected_never_crashes(ts: object, kind: str) -> None:
    wire = ts.isoformat() if hasattr(ts, "isoformat") else ts
    body = {"sensor": "seg1-west", "ts": wire, "seq": 1}
    body |= {"in": 1, "out": 0} if kind == "count" else {"in_total": 1, "out_total": 0}
    ing = Ingestor(SITE)
    ing.feed(f"dt/crowdflow/riverside/seg-1/seg1-west/{kind}", json.dumps(body).encode(), T0)
    assert ing.stats.accepted + ing.stats.rejected_total == 1
