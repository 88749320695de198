"""Router over the mini roster: the most specific on-shift officer, fallbacks, escalation steps, tokens, scope.

The mini roster (tests/fixtures/mini_roster.toml): ann answers for seg-1 by day (zone duty), bob for rs-01
(seg-1, seg-2) by day, cai for the whole grid at night, dan for rs-02 (plaza) on weekend days; lee leads the
grid by day; cmd is command always, ops an operator by day.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.model import Recipient
from alerts.roster import load_roster, parse_roster
from alerts.routing import Router
from domain.site import Site

FIXTURE = Path(__file__).parent.parent / "fixtures" / "mini_roster.toml"
SH = ZoneInfo("Asia/Shanghai")


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=SH).timestamp()


WED_09 = at(2025, 3, 5, 9)  # Wednesday, day shift
WED_21 = at(2025, 3, 5, 21)  # Wednesday, night shift
THU_03 = at(2025, 3, 6, 3)  # still Wednesday's night shift
SAT_11 = at(2025, 3, 8, 11)  # Saturday: dan's weekend shift and the day shift


@pytest.fixture
def router(mini_site: Site) -> Router:
    return Router(load_roster(FIXTURE, mini_site), mini_site)


def who(rs: tuple[Recipient, ...]) -> list[str]:
    return [r.person for r in rs]


# --- responsible ---


def test_zone_duty_beats_micro_grid_duty(router: Router) -> None:
    assert who(router.responsible("seg-1", WED_09)) == ["ann"]
    assert who(router.responsible("seg-2", WED_09)) == ["bob"]  # ann's duty names seg-1 only


def test_grid_duty_when_the_specific_ones_are_off_shift(router: Router) -> None:
    for zone in ("seg-1", "seg-2", "plaza"):
        assert who(router.responsible(zone, WED_21)) == ["cai"]
        assert who(router.responsible(zone, THU_03)) == ["cai"]


def test_falls_back_to_the_grid_leader_when_no_officer_is_on_shift(router: Router) -> None:
    leaders = router.responsible("plaza", WED_09)  # dan only works weekends
    assert who(leaders) == ["lee"] and leaders[0].role == "grid_leader"
    assert who(router.responsible("plaza", SAT_11)) == ["dan"]


def test_recipient_carries_name_role_and_channels(router: Router) -> None:
    (ann,) = router.responsible("seg-1", WED_09)
    assert ann == Recipient(
        person="ann",
        name="Ann An (安)",
        role="officer",
        channels=("ntfy://127.0.0.1:8090/crowdflow-ann", "webpush:sub-ann-1"),
    )


def test_several_on_shift_duties_of_equal_specificity_all_count(mini_site: Site) -> None:
    text = FIXTURE.read_text(encoding="utf-8") + '\n[[duties]]\nperson = "dan"\nshift = "day"\nzones = ["seg-1"]\n'
    router = Router(parse_roster(text, mini_site, "r.toml"), mini_site)
    assert who(router.responsible("seg-1", WED_09)) == ["ann", "dan"]


def test_a_person_with_two_matching_duties_is_told_once(mini_site: Site) -> None:
    text = FIXTURE.read_text(encoding="utf-8") + '\n[[duties]]\nperson = "ann"\nshift = "always"\nzones = ["seg-1"]\n'
    router = Router(parse_roster(text, mini_site, "r.toml"), mini_site)
    assert who(router.responsible("seg-1", WED_09)) == ["ann"]
    assert who(router.responsible("seg-1", WED_21)) == ["ann"]  # her always-duty beats cai's grid duty


# --- escalation steps ---


def test_steps_by_day(router: Router) -> None:
    assert who(router.recipients("seg-1", 0, WED_09)) == ["ann"]
    assert who(router.recipients("seg-1", 1, WED_09)) == ["lee"]
    assert who(router.recipients("seg-1", 2, WED_09)) == ["cmd", "ops"]
    assert who(router.recipients("seg-1", 7, WED_09)) == ["cmd", "ops"]  # past the end: the last step


def test_grid_leader_step_at_night_goes_to_command(router: Router) -> None:
    told = router.recipients("seg-2", 1, WED_21)  # lee works days only
    assert who(told) == ["cmd"] and told[0].role == "command"
    assert who(router.recipients("seg-2", 2, WED_21)) == ["cmd"]  # ops works days only


def test_never_empty_while_command_is_on_duty(router: Router, mini_site: Site) -> None:
    for day in (5, 8):
        for hour in range(24):
            for zone in mini_site.zones:
                for step in range(4):
                    assert router.recipients(zone, step, at(2025, 3, day, hour, 30)), (day, hour, zone, step)


def test_without_command_the_narrower_targets_are_told(mini_site: Site) -> None:
    text = FIXTURE.read_text(encoding="utf-8").replace(
        'person = "cmd"\nshift = "always"', 'person = "cmd"\nshift = "day"'
    )
    router = Router(parse_roster(text, mini_site, "r.toml"), mini_site)
    assert who(router.command(WED_21)) == []
    assert who(router.recipients("plaza", 2, WED_21)) == ["cai"]  # no command, no leader at night: the officer
    assert who(router.recipients("plaza", 2, WED_09)) == ["cmd", "ops"]


def test_nobody_at_all(mini_site: Site) -> None:
    text = FIXTURE.read_text(encoding="utf-8")
    text = text.replace('shift = "always"', 'shift = "day"').replace('shift = "night"', 'shift = "day"')
    router = Router(parse_roster(text, mini_site, "r.toml"), mini_site)
    assert router.recipients("seg-1", 0, WED_21) == ()
    assert router.gaps(WED_21) == [
        f"{z}: no officer, no grid leader of 'riverside', no command on shift" for z in mini_site.zones
    ]


def test_unknown_zone_goes_to_command(router: Router) -> None:
    assert router.responsible("atlantis", WED_09) == ()
    assert who(router.recipients("atlantis", 0, WED_09)) == ["cmd", "ops"]


def test_gaps_name_what_is_missing(router: Router) -> None:
    assert router.gaps(WED_21) == [
        "seg-1: no grid leader of 'riverside' on shift",
        "seg-2: no grid leader of 'riverside' on shift",
        "plaza: no grid leader of 'riverside' on shift",
    ]
    assert router.gaps(WED_09) == ["plaza: no officer on shift"]
    assert router.gaps(SAT_11) == []


def test_on_shift(router: Router) -> None:
    assert router.on_shift("ann", WED_09) and not router.on_shift("ann", WED_21)
    assert router.on_shift("cmd", WED_21) and not router.on_shift("nobody", WED_09)


# --- people, tokens, authorisation ---


def test_person_and_recipient(router: Router) -> None:
    p = router.person("lee")
    assert p is not None and p.role == "grid_leader" and p.name == "Lee Li (李)"
    assert router.person("nobody") is None
    r = router.recipient("lee")
    assert r is not None and r.channels == ("dingtalk://placeholder-token/",)


def test_authenticate(router: Router) -> None:
    ann = router.authenticate("token-ann")
    assert ann is not None and ann.id == "ann"
    cmd = router.authenticate("token-cmd")
    assert cmd is not None and cmd.id == "cmd"
    assert router.authenticate("token-an") is None
    assert router.authenticate("token-ann ") is None
    assert router.authenticate("") is None
    assert router.authenticate("6f9b87f9653b08c385b62194e862255275a6668b3ad600123122238e9f73b5bb") is None  # the hash


def test_authenticate_compares_every_hash_in_constant_time(router: Router, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real: Callable[[str, str], bool] = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert router.authenticate("token-ann") is not None  # ann is the first person with a token
    assert len(calls) == 4  # ann, lee, cmd, ops: no early exit that would time which one matched


def test_can_act_follows_duties_not_shifts(router: Router) -> None:
    assert router.can_act("ann", "seg-1")  # at any hour (she works days): acting is not limited to a shift
    assert not router.can_act("ann", "seg-2") and not router.can_act("ann", "plaza")
    assert router.can_act("bob", "seg-2") and not router.can_act("bob", "plaza")
    assert all(router.can_act("cai", z) for z in ("seg-1", "seg-2", "plaza"))  # a grid duty
    assert all(router.can_act("lee", z) for z in ("seg-1", "seg-2", "plaza"))  # a grid leader
    assert router.can_act("cmd", "plaza") and router.can_act("ops", "seg-1") and router.can_act("ops", "atlantis")
    assert not router.can_act("nobody", "seg-1")
    assert not router.can_act("ann", "atlantis")


def test_zones_of(router: Router) -> None:
    assert router.zones_of("ann") == frozenset({"seg-1"})
    assert router.zones_of("bob") == frozenset({"seg-1", "seg-2"})
    assert router.zones_of("dan") == frozenset({"plaza"})
    assert router.zones_of("lee") == frozenset({"seg-1", "seg-2", "plaza"})
    assert router.zones_of("cmd") is None and router.zones_of("ops") is None
    assert router.zones_of("nobody") == frozenset()
