"""Site, roster, configuration and recorded-CSV readers on mutated files: a usable result or the reader's own
error naming the problem, never a raw KeyError, TypeError or RecursionError (tests/fuzz/targets.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import inputs, targets


def fast(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
    )


@fast(300)
@given(inputs.site_files())
def test_mutated_site_file_loads_usable_or_names_the_problem(m: inputs.Mutated) -> None:
    targets.site(m)


@fast(300)
@given(inputs.roster_files())
def test_mutated_roster_loads_usable_or_names_the_problem(m: inputs.Mutated) -> None:
    targets.roster(m)


@fast(200)
@given(
    st.tuples(
        inputs.mutated(inputs.CONFIG_TEXT, text_level=False),
        st.dictionaries(inputs.env_names, inputs.env_values, max_size=3),
    )
)
def test_mutated_config_loads_or_names_the_problem(case: tuple[inputs.Mutated, dict[str, str]]) -> None:
    # Parsed text only: non-UTF-8 and deeply nested files still crash crowdflow/config.py (see test_regressions).
    targets.config(case)


@fast(200)
@given(inputs.csv_files(), st.booleans())
def test_recorded_csv_reads_consistent_or_says_why(raw: bytes, with_site: bool) -> None:
    targets.backtest_csv((raw, with_site))


@fast(150)
@given(inputs.label_files())
def test_label_file_reads_or_says_why(raw: bytes) -> None:
    targets.labels(raw)
