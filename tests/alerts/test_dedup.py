"""Dedup: every outcome with its stated reason, the kind, and the record kept after a push."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import alerts.dedup
from alerts.dedup import Candidate, Sent, Verdict, decide, judge
from alerts.model import DedupDecision, NotificationKind
from domain.levels import Level

S3, S4, S5 = "riverside-s03", "riverside-s04", "riverside-s05"
MIN = 60.0


def cand(
    level: Level = Level.II,
    members: tuple[str, ...] = (S3,),
    *,
    open: bool = True,
    acknowledged: bool = False,
    silenced_by: str = "",
    inhibited_by: str = "",
) -> Candidate:
    return Candidate(
        key="k",
        level=level,
        members=members,
        open=open,
        acknowledged=acknowledged,
        silenced=bool(silenced_by),
        inhibited=bool(inhibited_by),
        silenced_by=silenced_by,
        inhibited_by=inhibited_by,
    )


def sent(
    level: Level = Level.II,
    members: tuple[str, ...] = (S3,),
    at: float = 1000.0,
    *,
    kind: NotificationKind = "raised",
    acknowledged: bool = False,
) -> Sent:
    return Sent(kind=kind, level=level, members=members, at=at, acknowledged=acknowledged)


def pushed(v: Verdict) -> tuple[bool, str | None, str]:
    return (v.notify, v.kind, v.reason)


# ---- new ------------------------------------------------------------------------------------------------


def test_new_alert() -> None:
    v = judge(None, cand(Level.II), now=5.0)
    assert pushed(v) == (True, "raised", "New alert at II orange in riverside-s03.")
    assert v.sent == Sent(kind="raised", level=Level.II, members=(S3,), at=5.0, acknowledged=False)


def test_new_incident_names_its_segments() -> None:
    v = judge(None, cand(Level.III, (S3, S4, S5)), now=5.0)
    assert pushed(v) == (
        True,
        "raised",
        "New incident at III yellow across riverside-s03, riverside-s04 and riverside-s05.",
    )
    assert v.sent is not None and v.sent.members == (S3, S4, S5)


def test_new_without_members() -> None:
    assert judge(None, cand(Level.I, ()), now=5.0).reason == "New alert at I red."


def test_open_again_after_a_pushed_resolution_is_new() -> None:
    v = judge(sent(Level.NORMAL, kind="resolved"), cand(Level.III), now=2000.0)
    assert pushed(v) == (True, "raised", "New alert at III yellow in riverside-s03.")


# ---- level ----------------------------------------------------------------------------------------------


def test_level_up_is_pushed_even_when_acknowledged() -> None:
    v = judge(sent(Level.III, acknowledged=True), cand(Level.II, acknowledged=True), now=1010.0)
    assert pushed(v) == (True, "level_up", "Level up III yellow → II orange.")
    assert v.sent == Sent(kind="level_up", level=Level.II, members=(S3,), at=1010.0, acknowledged=True)


def test_level_up_names_joined_segments() -> None:
    v = judge(sent(Level.III, (S3, S4)), cand(Level.I, (S3, S4, S5)), now=1010.0)
    assert pushed(v) == (True, "level_up", "Level up III yellow → I red; segment riverside-s05 joined the incident.")


@pytest.mark.parametrize("acknowledged", [False, True])
def test_level_down_is_shown_not_pushed(acknowledged: bool) -> None:
    v = judge(sent(Level.II), cand(Level.III, acknowledged=acknowledged), now=1040.0)
    assert pushed(v) == (
        False,
        None,
        "Level down II orange → III yellow: shown, not pushed, because a calming zone must not wake people.",
    )
    assert v.sent is None


def test_level_down_names_segments_that_left() -> None:
    v = judge(sent(Level.I, (S3, S4, S5)), cand(Level.II, (S3, S4)), now=1040.0)
    assert not v.notify
    assert v.reason.endswith("must not wake people. Segment riverside-s05 left the incident.")


def test_level_down_is_not_pushed_even_when_a_reminder_would_be_due() -> None:
    v = judge(sent(Level.II), cand(Level.III), now=1000.0 + 60 * MIN, repeat_s=15 * MIN)
    assert not v.notify and v.reason.startswith("Level down II orange → III yellow")


def test_a_zone_flapping_at_a_threshold_is_pushed_once() -> None:
    record = judge(None, cand(Level.II), now=0.0).sent
    assert record is not None
    steps = [(Level.III, 30.0), (Level.II, 60.0), (Level.III, 90.0), (Level.II, 120.0)]
    assert [judge(record, cand(level), now=t).notify for level, t in steps] == [False] * 4
    assert judge(record, cand(Level.II), now=120.0).reason == "Same level II orange as sent 2 min ago."
    assert judge(record, cand(Level.I), now=150.0).kind == "level_up"


# ---- members --------------------------------------------------------------------------------------------


def test_member_added() -> None:
    v = judge(sent(Level.II, (S3, S4)), cand(Level.II, (S3, S4, S5)), now=1010.0)
    assert pushed(v) == (True, "member_added", "Segment riverside-s05 joined the incident.")
    assert v.sent is not None and v.sent.members == (S3, S4, S5)


def test_members_added_while_level_down() -> None:
    v = judge(sent(Level.II, (S4,)), cand(Level.III, (S3, S4, S5)), now=1010.0)
    assert pushed(v) == (
        True,
        "member_added",
        "Segments riverside-s03 and riverside-s05 joined the incident (level now III yellow, down from II orange).",
    )


def test_members_left() -> None:
    v = judge(sent(Level.II, (S3, S4, S5)), cand(Level.II, (S4, S5)), now=1040.0)
    assert pushed(v) == (
        False,
        None,
        "Segment riverside-s03 left the incident: shown, not pushed; the rest stays II orange as sent 40 s ago.",
    )


def test_a_segment_leaving_and_coming_back_is_not_pushed_again() -> None:
    record = sent(Level.II, (S3, S4, S5))
    assert not judge(record, cand(Level.II, (S3, S4)), now=1010.0).notify
    assert not judge(record, cand(Level.II, (S3, S4, S5)), now=1020.0).notify


# ---- same level and reminders ---------------------------------------------------------------------------


def test_same_level() -> None:
    assert pushed(judge(sent(Level.II), cand(Level.II), now=1040.0)) == (
        False,
        None,
        "Same level II orange as sent 40 s ago.",
    )


def test_same_level_acknowledged() -> None:
    v = judge(sent(Level.II), cand(Level.II, acknowledged=True), now=1000.0 + 3 * 3600, repeat_s=15 * MIN)
    assert pushed(v) == (False, None, "Same level II orange as sent 3 h ago, and acknowledged.")


def test_same_level_before_the_reminder_is_due() -> None:
    v = judge(sent(Level.II), cand(Level.II), now=1000.0 + 14 * MIN, repeat_s=15 * MIN)
    assert pushed(v) == (
        False,
        None,
        "Same level II orange as sent 14 min ago; a reminder follows 15 min after it if unacknowledged.",
    )


def test_reminder_when_unacknowledged_after_repeat_s() -> None:
    v = judge(sent(Level.II), cand(Level.II), now=1000.0 + 15 * MIN, repeat_s=15 * MIN)
    assert pushed(v) == (True, "reminder", "Still II orange and unacknowledged after 15 min.")
    assert v.sent is not None and v.sent.at == 1000.0 + 15 * MIN and v.sent.kind == "reminder"
    # The next reminder counts from this one.
    assert not judge(v.sent, cand(Level.II), now=1000.0 + 29 * MIN, repeat_s=15 * MIN).notify
    assert judge(v.sent, cand(Level.II), now=1000.0 + 30 * MIN, repeat_s=15 * MIN).kind == "reminder"


def test_reminder_after_an_acknowledgement_ran_out() -> None:
    v = judge(sent(Level.II, acknowledged=True), cand(Level.II), now=1000.0 + 125 * MIN, repeat_s=15 * MIN)
    assert pushed(v) == (True, "reminder", "Still II orange and no longer acknowledged after 2 h 5 min.")


def test_no_reminders_without_repeat_s() -> None:
    assert not judge(sent(Level.II), cand(Level.II), now=1000.0 + 10 * 3600).notify


def test_members_left_but_reminder_due() -> None:
    v = judge(sent(Level.II, (S3, S4, S5)), cand(Level.II, (S4, S5)), now=1000.0 + 20 * MIN, repeat_s=15 * MIN)
    assert pushed(v) == (True, "reminder", "Still II orange and unacknowledged after 20 min.")


@pytest.mark.parametrize("repeat_s", [0.0, -5.0])
def test_repeat_s_must_be_positive(repeat_s: float) -> None:
    with pytest.raises(ValueError, match="repeat_s must be a positive number of seconds, or None"):
        judge(None, cand(), now=0.0, repeat_s=repeat_s)


# ---- resolution -----------------------------------------------------------------------------------------


def test_resolved_after_a_push() -> None:
    v = judge(sent(Level.II), cand(Level.NORMAL, open=False), now=1000.0 + 5 * MIN)
    assert pushed(v) == (True, "resolved", "Resolved; II orange was pushed 5 min ago, so people are told it ended.")
    assert v.sent is not None and v.sent.kind == "resolved"
    again = judge(v.sent, cand(Level.NORMAL, open=False), now=1000.0 + 6 * MIN)
    assert pushed(again) == (False, None, "Resolved, and the resolution was already pushed 60 s ago.")


def test_resolved_before_anything_was_pushed() -> None:
    v = judge(None, cand(Level.NORMAL, open=False), now=5.0)
    assert pushed(v) == (False, None, "Resolved before anything was pushed: nothing to call off.")


def test_resolution_gets_through_silence_and_inhibition() -> None:
    v = judge(sent(Level.II), cand(Level.NORMAL, open=False, silenced_by="sil-1", inhibited_by="a9"), now=1100.0)
    assert v.notify and v.kind == "resolved"


# ---- silenced and inhibited -----------------------------------------------------------------------------


def test_silenced() -> None:
    v = judge(None, cand(Level.II, silenced_by="sil-7"), now=5.0)
    assert pushed(v) == (False, None, "Silenced by sil-7: shown on the wall, not pushed.")
    assert v.sent is None
    bare = Candidate(key="k", level=Level.II, members=(S3,), silenced=True)
    assert judge(None, bare, now=5.0).reason == "Silenced by an active silence: shown on the wall, not pushed."


def test_silenced_level_up_and_after_the_silence() -> None:
    record = sent(Level.III)
    assert not judge(record, cand(Level.II, silenced_by="sil-7"), now=1010.0).notify
    # The silence ended (or the level rose above its max_level): the level up is pushed against what was sent.
    assert pushed(judge(record, cand(Level.II), now=1020.0)) == (True, "level_up", "Level up III yellow → II orange.")


def test_inhibited() -> None:
    v = judge(sent(Level.III), cand(Level.II, inhibited_by="a-cap"), now=1010.0)
    assert pushed(v) == (
        False,
        None,
        "Inhibited by alert a-cap: it follows from that worse alert, which is pushed.",
    )
    bare = Candidate(key="k", level=Level.II, members=(S3,), inhibited=True)
    assert judge(None, bare, now=5.0).reason == (
        "Inhibited by a worse alert: it follows from that worse alert, which is pushed."
    )


def test_a_name_without_its_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="silenced_by='sil-7' given but silenced is False; set silenced=True too"):
        Candidate(key="k", level=Level.II, members=(S3,), silenced_by="sil-7")
    with pytest.raises(ValueError, match="inhibited_by='a1' given but inhibited is False"):
        Candidate(key="k", level=Level.II, members=(S3,), inhibited_by="a1")


def test_silence_is_named_before_inhibition() -> None:
    assert judge(None, cand(silenced_by="s", inhibited_by="a"), now=0.0).reason.startswith("Silenced by s")


# ---- contract -------------------------------------------------------------------------------------------


def test_decide_is_judge_as_a_dedup_decision() -> None:
    d = decide(sent(Level.III), cand(Level.II), now=1010.0)
    assert d == DedupDecision(notify=True, reason="Level up III yellow → II orange.")


levels = st.sampled_from(list(Level))
zones = st.lists(st.sampled_from([S3, S4, S5]), unique=True, max_size=3).map(tuple)
sents = st.builds(
    Sent,
    kind=st.sampled_from(["raised", "level_up", "member_added", "reminder", "resolved"]),
    level=levels,
    members=zones,
    at=st.floats(0, 10_000),
    acknowledged=st.booleans(),
)
cands = st.builds(
    Candidate,
    key=st.just("k"),
    level=levels,
    members=zones,
    open=st.booleans(),
    acknowledged=st.booleans(),
    silenced=st.booleans(),
    inhibited=st.booleans(),
)


@given(prev=st.none() | sents, c=cands, now=st.floats(0, 20_000), repeat=st.none() | st.floats(1, 5_000))
def test_every_outcome_states_a_sentence_and_keeps_its_record_consistent(
    prev: Sent | None, c: Candidate, now: float, repeat: float | None
) -> None:
    v = judge(prev, c, now, repeat_s=repeat)
    assert v.reason[:1].isupper() and v.reason.endswith(".")
    assert v.notify == (v.kind is not None) == (v.sent is not None)
    if v.sent is not None:
        assert (v.sent.kind, v.sent.level, v.sent.members, v.sent.at) == (v.kind, c.level, c.members, now)
    if c.open and (c.silenced or c.inhibited):
        assert not v.notify
    if prev is not None and prev.kind != "resolved" and c.open and c.level < prev.level:
        assert v.kind in (None, "member_added")  # a calmer level alone never pushes


def test_durations_read_naturally() -> None:
    cases = {40.0: "40 s", 89.0: "89 s", 90.0: "2 min", 15 * MIN: "15 min", 120 * MIN: "2 h", 125 * MIN: "2 h 5 min"}
    assert {s: alerts.dedup._span(s) for s in cases} == cases


def test_docstring_examples() -> None:
    assert doctest.testmod(alerts.dedup).failed == 0
