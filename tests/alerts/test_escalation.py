"""Escalation timing to the second with an injected clock: steps, emergency mode, reminders and their cap,
acknowledgement expiry, level changes, and a restart that resumes the timers without repeating anything."""

from __future__ import annotations

import json

import pytest

from alerts.escalation import Due, Escalator
from alerts.roster import EscalationPolicy
from domain.levels import Level

T0 = 1_741_000_000.0
POLICY = EscalationPolicy()  # I 120 s, II 300, III 600, IV 1200; repeat 600 s x3; ack ttl I 600 .. IV 3600


def calm(zone: str) -> bool:
    return False


def everywhere(zone: str) -> bool:
    return True


@pytest.fixture
def esc() -> Escalator:
    return Escalator(POLICY)


def steps(dues: list[Due]) -> list[tuple[str, int, str, int]]:
    return [(d.key, d.step, d.kind, d.repeat) for d in dues]


# --- steps ---


def test_red_not_acknowledged_escalates_at_exactly_120_s(esc: Escalator) -> None:
    esc.start("a1", "riverside-s05", Level.I, T0)
    assert esc.due(T0 + 119, calm) == []
    assert esc.due(T0 + 119.999, calm) == []
    assert esc.due(T0 + 120, calm) == [
        Due(key="a1", zone="riverside-s05", step=1, kind="escalated", level=Level.I, repeat=0)
    ]
    assert esc.due(T0 + 120, calm) == []  # returned once


def test_each_step_waits_its_own_delay_from_when_it_was_told(esc: Escalator) -> None:
    esc.start("a1", "z", Level.II, T0)
    assert steps(esc.due(T0 + 300, calm)) == [("a1", 1, "escalated", 0)]
    assert esc.due(T0 + 599, calm) == []
    assert steps(esc.due(T0 + 600, calm)) == [("a1", 2, "escalated", 0)]


def test_a_late_tick_counts_from_when_the_step_was_actually_told(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    assert steps(esc.due(T0 + 500, calm)) == [("a1", 1, "escalated", 0)]  # the service was busy, or down
    assert esc.due(T0 + 619, calm) == []  # step 2 gets a full 120 s after step 1 was told at +500
    assert steps(esc.due(T0 + 620, calm)) == [("a1", 2, "escalated", 0)]


def test_emergency_halves_the_delay_for_that_zone_only(esc: Escalator) -> None:
    esc.start("s05", "riverside-s05", Level.I, T0)
    esc.start("plaza", "plaza", Level.I, T0)
    in_emergency = {"riverside-s05"}

    def em(zone: str) -> bool:
        return zone in in_emergency

    assert esc.due(T0 + 59, em) == []
    assert steps(esc.due(T0 + 60, em)) == [("s05", 1, "escalated", 0)]
    # both due at +120: ties in key order
    assert steps(esc.due(T0 + 120, em)) == [("plaza", 1, "escalated", 0), ("s05", 2, "escalated", 0)]


def test_emergency_switched_on_mid_wait_shortens_the_running_wait(esc: Escalator) -> None:
    esc.start("a1", "z", Level.III, T0)  # 600 s, 300 s in emergency
    assert esc.due(T0 + 299, calm) == []
    assert esc.due(T0 + 299, everywhere) == []
    assert steps(esc.due(T0 + 300, everywhere)) == [("a1", 1, "escalated", 0)]


def test_due_lists_the_earliest_first(esc: Escalator) -> None:
    esc.start("blue", "z1", Level.IV, T0)
    esc.start("red", "z2", Level.I, T0 + 1000)
    assert [d.key for d in esc.due(T0 + 1200, calm)] == ["red", "blue"]  # red's +1120 before blue's +1200


# --- reminders ---


def test_reminders_after_the_last_step_then_silence(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.due(T0 + 120, calm)  # step 1
    assert steps(esc.due(T0 + 240, calm)) == [("a1", 2, "escalated", 0)]  # step 2: command, the last
    assert esc.due(T0 + 839, calm) == []
    assert steps(esc.due(T0 + 840, calm)) == [("a1", 2, "reminder", 1)]
    assert steps(esc.due(T0 + 1440, calm)) == [("a1", 2, "reminder", 2)]
    assert steps(esc.due(T0 + 2040, calm)) == [("a1", 2, "reminder", 3)]
    assert esc.due(T0 + 2640, calm) == []  # max_repeats = 3: silence from here on
    assert esc.due(T0 + 86_400, calm) == []
    assert esc.next_due(calm) is None
    assert "a1" in esc  # still tracked: an acknowledgement or a resolve still counts


def test_reminders_shorten_in_emergency(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.due(T0 + 60, everywhere)
    esc.due(T0 + 120, everywhere)
    assert esc.due(T0 + 419, everywhere) == []
    assert steps(esc.due(T0 + 420, everywhere)) == [("a1", 2, "reminder", 1)]


def test_no_reminders_when_max_repeats_is_zero() -> None:
    esc = Escalator(EscalationPolicy(max_repeats=0))
    esc.start("a1", "z", Level.I, T0)
    esc.due(T0 + 120, calm)
    esc.due(T0 + 240, calm)
    assert esc.due(T0 + 10_000, calm) == []


def test_a_single_step_policy_reminds_the_responsible() -> None:
    esc = Escalator(EscalationPolicy(steps=("responsible",), repeat_s=60, max_repeats=2))
    esc.start("a1", "z", Level.I, T0)
    assert esc.due(T0 + 59, calm) == []
    assert steps(esc.due(T0 + 60, calm)) == [("a1", 0, "reminder", 1)]
    assert steps(esc.due(T0 + 120, calm)) == [("a1", 0, "reminder", 2)]
    assert esc.due(T0 + 180, calm) == []


# --- acknowledgements ---


def test_acknowledgement_stops_escalation(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    assert esc.acknowledged("a1", T0 + 100)
    assert esc.due(T0 + 120, calm) == [] and esc.due(T0 + 599, calm) == []


def test_ack_runs_out_after_its_ttl_and_is_reported_once(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.acknowledged("a1", T0 + 100)
    assert esc.ack_expired(T0 + 699, calm) == []
    assert esc.ack_expired(T0 + 700, calm) == ["a1"]  # I red: 600 s
    assert esc.ack_expired(T0 + 800, calm) == []
    assert esc.due(T0 + 800, calm) == []  # still acknowledged until the caller reopens


def test_ack_ttl_by_level_and_in_emergency(esc: Escalator) -> None:
    esc.start("blue", "z", Level.IV, T0)
    esc.acknowledged("blue", T0)
    assert esc.ack_expired(T0 + 3599, calm) == []
    assert esc.ack_expired(T0 + 1799, everywhere) == []
    assert esc.ack_expired(T0 + 1800, everywhere) == ["blue"]


def test_reopen_starts_again_at_step_zero(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.due(T0 + 120, calm)  # step 1
    esc.acknowledged("a1", T0 + 130)
    assert esc.ack_expired(T0 + 730, calm) == ["a1"]
    assert esc.reopen("a1", Level.II, T0 + 731)
    t = esc.get("a1")
    assert t is not None and (t.step, t.level, t.acked_at, t.started_at) == (0, Level.II, None, T0 + 731)
    assert esc.due(T0 + 731 + 299, calm) == []
    assert steps(esc.due(T0 + 731 + 300, calm)) == [("a1", 1, "escalated", 0)]


def test_acknowledging_again_renews_the_ttl(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.acknowledged("a1", T0)
    esc.acknowledged("a1", T0 + 500)
    assert esc.ack_expired(T0 + 1099, calm) == []
    assert esc.ack_expired(T0 + 1100, calm) == ["a1"]


# --- level changes ---


def test_a_rise_to_red_does_not_wait_out_the_blue_delay(esc: Escalator) -> None:
    esc.start("a1", "z", Level.IV, T0)
    assert esc.level_changed("a1", Level.I, T0 + 60)
    assert esc.due(T0 + 119, calm) == []
    assert steps(esc.due(T0 + 120, calm)) == [("a1", 1, "escalated", 0)]  # not +1200
    assert esc.due(T0 + 120, calm) == []


def test_a_late_rise_escalates_at_once(esc: Escalator) -> None:
    esc.start("a1", "z", Level.IV, T0)
    assert esc.due(T0 + 500, calm) == []
    esc.level_changed("a1", Level.I, T0 + 500)
    # nobody answered for 500 s, longer than a red alert may wait
    assert [(d.step, d.level) for d in esc.due(T0 + 500, calm)] == [(1, Level.I)]


def test_a_fall_gives_the_slower_pace(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.level_changed("a1", Level.IV, T0 + 60)
    assert esc.due(T0 + 1199, calm) == []
    assert [(d.step, d.level) for d in esc.due(T0 + 1200, calm)] == [(1, Level.IV)]


def test_level_change_keeps_an_ack_and_its_ttl_follows(esc: Escalator) -> None:
    esc.start("a1", "z", Level.IV, T0)
    esc.acknowledged("a1", T0)
    esc.level_changed("a1", Level.I, T0 + 100)
    assert esc.due(T0 + 10_000, calm) == []
    assert esc.ack_expired(T0 + 599, calm) == []
    assert esc.ack_expired(T0 + 600, calm) == ["a1"]  # red's 600 s, not blue's 3600 s


def test_untracked_keys_and_normal_level(esc: Escalator) -> None:
    assert not esc.level_changed("ghost", Level.I, T0)
    assert not esc.acknowledged("ghost", T0)
    assert not esc.reopen("ghost", Level.I, T0)
    assert not esc.stop("ghost")
    with pytest.raises(ValueError, match="normal is not escalated"):
        esc.start("a1", "z", Level.NORMAL, T0)
    esc.start("a1", "z", Level.I, T0)
    with pytest.raises(ValueError, match="stop"):
        esc.level_changed("a1", Level.NORMAL, T0)


def test_stop_forgets(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    assert esc.stop("a1") and "a1" not in esc and len(esc) == 0
    assert esc.due(T0 + 10_000, calm) == [] and esc.ack_expired(T0 + 10_000, calm) == []


def test_start_again_starts_over(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.due(T0 + 120, calm)
    esc.start("a1", "z", Level.I, T0 + 200)
    t = esc.get("a1")
    assert t is not None and t.step == 0
    assert steps(esc.due(T0 + 320, calm)) == [("a1", 1, "escalated", 0)]


def test_next_due(esc: Escalator) -> None:
    assert esc.next_due(calm) is None
    esc.start("a1", "z", Level.II, T0)
    esc.start("a2", "z", Level.IV, T0)
    assert esc.next_due(calm) == T0 + 300
    assert esc.next_due(everywhere) == T0 + 150
    esc.acknowledged("a1", T0 + 10)
    assert esc.next_due(calm) == T0 + 1200  # a1's ack runs out at +1210, a2 escalates at +1200


# --- restart ---


def test_state_round_trip_resumes_without_repeating(esc: Escalator) -> None:
    esc.start("a1", "z1", Level.I, T0)
    esc.start("a2", "z2", Level.II, T0)
    esc.start("a3", "z3", Level.III, T0)
    assert steps(esc.due(T0 + 120, calm)) == [("a1", 1, "escalated", 0)]
    esc.acknowledged("a2", T0 + 50)
    saved = json.loads(json.dumps(esc.to_state()))  # through JSON, as a store would keep it

    after = Escalator(POLICY)
    after.from_state(saved)
    assert after.tracked() == esc.tracked()
    assert after.due(T0 + 120, calm) == []  # a1's step 1 is not sent again
    assert after.due(T0 + 239, calm) == []
    assert steps(after.due(T0 + 240, calm)) == [("a1", 2, "escalated", 0)]
    assert after.ack_expired(T0 + 1250, calm) == ["a2"]
    assert steps(after.due(T0 + 600, calm)) == [("a3", 1, "escalated", 0)]


def test_state_is_readable_json(esc: Escalator) -> None:
    esc.start("inc-1", "riverside-s05", Level.I, T0)
    state = esc.to_state()
    assert state["version"] == 1
    assert state["tracked"]["inc-1"]["zone"] == "riverside-s05" and state["tracked"]["inc-1"]["step"] == 0


def test_empty_and_bad_state(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.from_state({})
    assert esc.tracked() == {}
    with pytest.raises(ValueError, match="discard it"):
        esc.from_state({"version": 1, "tracked": {"a1": {"zone": "z"}}})
    with pytest.raises(ValueError, match="version 9"):
        esc.from_state({"version": 9, "tracked": {}})


def test_state_from_a_longer_policy_stops_at_the_last_step(esc: Escalator) -> None:
    esc.start("a1", "z", Level.I, T0)
    esc.due(T0 + 120, calm)
    esc.due(T0 + 240, calm)  # step 2
    short = Escalator(EscalationPolicy(steps=("responsible", "command")))
    short.from_state(esc.to_state())
    t = short.get("a1")
    assert t is not None and t.step == 1
    assert steps(short.due(T0 + 840, calm)) == [("a1", 1, "reminder", 1)]
