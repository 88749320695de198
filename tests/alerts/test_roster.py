"""The duty roster: strict loading (every error names the file, the entry and the field), shifts in the site's
timezone across midnight, the escalation policy, and the default Lujiazui roster covering every zone at any hour."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.roster import (
    DEFAULT_ACK_TTL_S,
    DEFAULT_DELAY_S,
    EscalationPolicy,
    Roster,
    RosterError,
    Shift,
    check_channel,
    load_roster,
    parse_roster,
    token_hash,
)
from alerts.routing import Router
from domain.levels import Level
from domain.loader import load_site
from domain.site import Site

FIXTURE = Path(__file__).parent.parent / "fixtures" / "mini_roster.toml"
TEXT = FIXTURE.read_text(encoding="utf-8")
NAME = "bad_roster.toml"
SH = ZoneInfo("Asia/Shanghai")


def mutate(old: str, new: str, text: str = TEXT) -> str:
    assert text.count(old) == 1, f"fixture changed: {old!r} no longer occurs exactly once"
    return text.replace(old, new)


def problems_of(text: str, site: Site) -> str:
    with pytest.raises(RosterError) as info:
        parse_roster(text, site, NAME)
    err = info.value
    assert err.path == NAME
    assert str(err).startswith(f"{NAME}: ")
    assert err.problems
    return str(err)


def at(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> float:
    """Epoch seconds of a Shanghai wall-clock time."""
    return datetime(y, mo, d, h, mi, s, tzinfo=SH).timestamp()


# --- the fixture and the helpers ---


def test_fixture_loads(mini_site: Site) -> None:
    r = load_roster(FIXTURE, mini_site)
    assert set(r.people) == {"ann", "bob", "cai", "dan", "lee", "cmd", "ops"}
    assert r.people["ann"].channels == ("ntfy://127.0.0.1:8090/crowdflow-ann", "webpush:sub-ann-1")
    assert r.people["ops"].channels == ()  # an operator may watch the wall only
    assert r.people["bob"].token_sha256 is None
    assert [s.id for s in r.shifts.values()] == ["day", "night", "weekend"]
    assert len(r.duties) == 7 and r.path == str(FIXTURE)
    p = r.policy
    assert p.steps == ("responsible", "grid_leader", "command")
    assert p.delay_s == {Level.I: 120, Level.II: 300, Level.III: 600, Level.IV: 1200}
    assert (p.repeat_s, p.max_repeats, p.emergency_factor) == (300, 2, 0.5)


def test_token_hash_is_hex_sha256() -> None:
    # FIPS 180-2 test vector for "abc"
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert token_hash("token-ann") == "6f9b87f9653b08c385b62194e862255275a6668b3ad600123122238e9f73b5bb"


def test_escalation_defaults_when_the_section_is_left_out(mini_site: Site) -> None:
    start, end = TEXT.index("[escalation]"), TEXT.index("[[people]]")
    r = parse_roster(TEXT[:start] + TEXT[end:], mini_site, NAME)
    assert r.policy.delay_s == DEFAULT_DELAY_S == {Level.I: 120, Level.II: 300, Level.III: 600, Level.IV: 1200}
    assert r.policy.ack_ttl_s == DEFAULT_ACK_TTL_S == {Level.I: 600, Level.II: 1200, Level.III: 1800, Level.IV: 3600}
    assert r.policy.emergency_factor == 0.5


def test_level_keys_accept_colours_and_partial_tables(mini_site: Site) -> None:
    text = mutate("[escalation.delay_s]\nI = 120\nII = 300\n", '[escalation.delay_s]\nred = 90\n"II orange" = 240\n')
    r = parse_roster(text, mini_site, NAME)
    assert r.policy.delay_s[Level.I] == 90 and r.policy.delay_s[Level.II] == 240
    assert r.policy.delay_s[Level.III] == 600  # as written in the fixture


# --- strict validation: each message names the file, the entry and the field ---


def test_unknown_key_in_a_person(mini_site: Site) -> None:
    msg = problems_of(mutate('id = "bob"\n', 'id = "bob"\nemail = "bob@example.invalid"\n'), mini_site)
    assert "people 'bob' (entry 2)" in msg and "email" in msg and "unknown field" in msg


def test_unknown_key_in_a_duty(mini_site: Site) -> None:
    msg = problems_of(mutate('person = "dan"\n', 'person = "dan"\nsegments = [1]\n'), mini_site)
    assert "duties entry 4 (person 'dan')" in msg and "segments" in msg and "unknown field" in msg


def test_unknown_section(mini_site: Site) -> None:
    msg = problems_of(TEXT + "\n[pagers]\nfoo = 1\n", mini_site)
    assert "pagers" in msg and "unknown field" in msg and "allowed sections" in msg


def test_unknown_role_lists_the_roles(mini_site: Site) -> None:
    msg = problems_of(mutate('role = "command"', 'role = "chief"'), mini_site)
    assert "people 'cmd' (entry 6), field role" in msg and "officer, grid_leader, command, operator" in msg


def test_missing_name(mini_site: Site) -> None:
    msg = problems_of(mutate('name = "Bob Bai (白)"\n', ""), mini_site)
    assert "people 'bob' (entry 2)" in msg and "missing required field `name`" in msg


def test_duplicate_person(mini_site: Site) -> None:
    extra = '\n[[people]]\nid = "bob"\nname = "Another Bob"\nrole = "officer"\nchannels = ["ntfy://h/t"]\n'
    msg = problems_of(TEXT + extra, mini_site)
    assert "people 'bob' (entry 8), field id: used twice" in msg


def test_bad_person_id(mini_site: Site) -> None:
    msg = problems_of(mutate('id = "dan"', 'id = "dan du"').replace('person = "dan"', 'person = "dan du"'), mini_site)
    assert "people 'dan du' (entry 4), field id: use letters, digits" in msg


def test_duty_for_unknown_person(mini_site: Site) -> None:
    msg = problems_of(mutate('person = "dan"', 'person = "dave"'), mini_site)
    assert "duties entry 4 (person 'dave'), field person: no person 'dave'" in msg


@pytest.mark.parametrize(
    ("old", "new", "field", "what"),
    [
        ('zones = ["seg-1"]', 'zones = ["seg-9"]', "zones", "no zone 'seg-9' in site 'mini'"),
        ('micro_grids = ["rs-02"]', 'micro_grids = ["rs-03"]', "micro_grids", "no micro-grid 'rs-03'"),
        ('grids = ["riverside"]\n\n[[duties]]\nperson = "dan"', 'grids = ["inland"]\n\n[[duties]]\nperson = "dan"',
         "grids", "no grid 'inland'"),
    ],
)  # fmt: skip
def test_duty_naming_an_id_not_in_the_site(mini_site: Site, old: str, new: str, field: str, what: str) -> None:
    msg = problems_of(mutate(old, new), mini_site)
    assert f"field {field}: {what}" in msg and "duties entry" in msg


def test_duty_listing_a_zone_twice(mini_site: Site) -> None:
    msg = problems_of(mutate('zones = ["seg-1"]', 'zones = ["seg-1", "seg-1"]'), mini_site)
    assert "duties entry 1 (person 'ann'), field zones: 'seg-1' listed twice" in msg


def test_duty_with_unknown_shift(mini_site: Site) -> None:
    msg = problems_of(mutate('shift = "weekend"', 'shift = "weekends"'), mini_site)
    assert "duties entry 4 (person 'dan'), field shift: no shift 'weekends'" in msg and "'always'" in msg


@pytest.mark.parametrize(
    ("old", "new", "where", "what"),
    [
        ('zones = ["seg-1"]\n', "", "duties entry 1 (person 'ann')", "must name the grids, micro_grids or zones"),
        ('person = "lee"\nshift = "day"\ngrids = ["riverside"]', 'person = "lee"\nshift = "day"\nzones = ["seg-1"]',
         "duties entry 5 (person 'lee'), field grids", "names whole grids"),
        ('person = "cmd"\nshift = "always"\n', 'person = "cmd"\nshift = "always"\ngrids = ["riverside"]\n',
         "duties entry 6 (person 'cmd')", "covers the whole site"),
    ],
)  # fmt: skip
def test_duty_must_fit_the_role(mini_site: Site, old: str, new: str, where: str, what: str) -> None:
    msg = problems_of(mutate(old, new), mini_site)
    assert where in msg and what in msg


@pytest.mark.parametrize(
    ("old", "new", "field", "what"),
    [
        ('start = "08:00"', 'start = "25:00"', "start", "'25:00' is not a time of day: write HH:MM"),
        ('start = "08:00"', 'start = "8am"', "start", "'8am' is not a time of day"),
        ('start = "08:00"', 'start = "8:00"', "start", "'8:00' is not a time of day"),
        ('end = "20:00"\n\n[[shifts]]\nid = "night"', 'end = "20:60"\n\n[[shifts]]\nid = "night"', "end", "'20:60'"),
        ('start = "08:00"', "start = 8", "start", "Expected `str`, got `int` (write the time of day in quotes"),
        ('start = "08:00"', "start = 08:00:00", "start", "Expected `str`"),
        ('start = "08:00"', 'start = "24:00"', "start", "a shift cannot start at 24:00"),
    ],
)
def test_bad_shift_time(mini_site: Site, old: str, new: str, field: str, what: str) -> None:
    msg = problems_of(mutate(old, new), mini_site)
    assert f"shifts 'day' (entry 1), field {field}: {what}" in msg


def test_end_of_day_is_allowed(mini_site: Site) -> None:
    r = parse_roster(mutate('end = "20:00"', 'end = "24:00"'), mini_site, NAME)
    assert r.shifts["day"].end_s == 86_400


def test_bad_weekday(mini_site: Site) -> None:
    msg = problems_of(mutate('days = ["sat", "sun"]', 'days = ["sat", "sunday"]'), mini_site)
    assert "shifts 'weekend' (entry 3), field days[1]" in msg and "mon, tue, wed, thu, fri, sat, sun" in msg


def test_shift_named_always_is_reserved(mini_site: Site) -> None:
    msg = problems_of(mutate('id = "weekend"', 'id = "always"').replace('"weekend"', '"always"'), mini_site)
    assert "shifts 'always' (entry 3), field id: 'always' is reserved" in msg


def test_duplicate_shift(mini_site: Site) -> None:
    msg = problems_of(mutate('id = "weekend"', 'id = "night"').replace('"weekend"', '"night"'), mini_site)
    assert "shifts 'night' (entry 3), field id: used twice" in msg


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("127.0.0.1:8091/bob", "has no scheme"),
        ("json:127.0.0.1/bob", "has no host or target after 'json://'"),
        ("json:///bob", "has no host or target"),
        ("json://127.0.0.1:port/bob", "is not a valid URL"),
        ("json://127.0.0.1/my bob", "contains spaces"),
        ("", "is empty"),
        ("webpush:", "webpush:<subscription id>"),
    ],
)
def test_bad_channel_url(mini_site: Site, url: str, what: str) -> None:
    msg = problems_of(mutate('"json://127.0.0.1:8091/bob"', f'"{url}"'), mini_site)
    assert "people 'bob' (entry 2), field channels[0]: " in msg and what in msg


@pytest.mark.parametrize(
    "url",
    [
        "ntfy://127.0.0.1:8090/crowdflow-ann",
        "json://127.0.0.1:8091/path",
        "mailto://user:pass@example.invalid",
        "dingtalk://token/",
        "wecom://corp/secret/agent",
        "webpush:sub-1",
    ],
)
def test_good_channel_urls(url: str) -> None:
    assert check_channel(url) is None


def test_officer_needs_a_channel(mini_site: Site) -> None:
    msg = problems_of(mutate('channels = ["json://127.0.0.1:8091/bob"]\n', ""), mini_site)
    assert "people 'bob' (entry 2), field channels: no way to reach this officer" in msg


def test_channel_listed_twice(mini_site: Site) -> None:
    bob = 'channels = ["json://127.0.0.1:8091/bob"]'
    msg = problems_of(mutate(bob, 'channels = ["json://127.0.0.1:8091/bob", "json://127.0.0.1:8091/bob"]'), mini_site)
    assert "people 'bob' (entry 2), field channels[1]: listed twice" in msg


def test_bad_and_shared_tokens(mini_site: Site) -> None:
    lee = "df64d43f84f5df57538706c49b9de1cc79cb6d7b9309eddd3d7945dd8536f31a"
    msg = problems_of(mutate(lee, "DF64" + lee[4:]), mini_site)
    assert "people 'lee' (entry 5), field token_sha256: must be 64 lowercase hex" in msg and "token_hash" in msg
    ann = "6f9b87f9653b08c385b62194e862255275a6668b3ad600123122238e9f73b5bb"
    msg = problems_of(mutate(lee, ann), mini_site)
    assert "people 'lee' (entry 5), field token_sha256: same token as 'ann'" in msg


def test_bad_phone(mini_site: Site) -> None:
    msg = problems_of(mutate('phone = "+86 21 0000 0001"', 'phone = "call me"'), mini_site)
    assert "people 'ann' (entry 1), field phone" in msg


def test_roster_for_another_site(mini_site: Site) -> None:
    msg = problems_of(mutate('site = "mini"', 'site = "lujiazui"'), mini_site)
    assert "roster, field site: this roster is for site 'lujiazui'" in msg and "'mini'" in msg


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ("emergency_factor = 0.5", "emergency_factor = 0", "field emergency_factor: must be within (0, 1]"),
        ("emergency_factor = 0.5", "emergency_factor = 1.5", "field emergency_factor: must be within (0, 1]"),
        ("max_repeats = 2", "max_repeats = -1", "field max_repeats: must be 0 or more"),
        ("repeat_s = 300", "repeat_s = 0", "field repeat_s: must be positive"),
        ("I = 120\n", "I = -5\n", "field delay_s.I: must be positive seconds"),
        ("I = 120\n", "I = 400\n", "field delay_s: I red (400 s) must not be longer than II orange (300 s)"),
        ("\nI = 600\n", "\nV = 600\n", "field ack_ttl_s.V: unknown level 'V'"),
        ("I = 120\n", "normal = 120\n", "field delay_s: 'normal' is not escalated"),
        ('steps = ["responsible", "grid_leader", "command"]', 'steps = ["responsible", "command", "command"]',
         "field steps: 'command' is listed twice"),
        ('steps = ["responsible", "grid_leader", "command"]', "steps = []", "field steps: list at least one"),
    ],
)  # fmt: skip
def test_bad_escalation_policy(mini_site: Site, old: str, new: str, what: str) -> None:
    msg = problems_of(mutate(old, new), mini_site)
    assert f"escalation, {what}" in msg


def test_unknown_escalation_target(mini_site: Site) -> None:
    msg = problems_of(mutate('"grid_leader", "command"]', '"mayor", "command"]'), mini_site)
    assert "escalation, field steps[1]" in msg and "responsible, grid_leader, command" in msg


def test_a_step_nobody_staffs(mini_site: Site) -> None:
    text = mutate('person = "cmd"\nshift = "always"\n', 'person = "cmd"\nshift = "always"\nzones = ["plaza"]\n')
    text = text.replace('role = "command"', 'role = "officer"').replace('role = "operator"', 'role = "officer"')
    msg = problems_of(text, mini_site)
    assert "escalation, field steps: 'command' is a step but no command or operator has a duty" in msg


def test_all_problems_reported_at_once(mini_site: Site) -> None:
    text = mutate('zones = ["seg-1"]', 'zones = ["seg-9"]')
    text = mutate('start = "08:00"', 'start = "8am"', text)
    text = mutate("emergency_factor = 0.5", "emergency_factor = 2", text)
    with pytest.raises(RosterError) as info:
        parse_roster(text, mini_site, NAME)
    assert len(info.value.problems) == 3
    assert f"{NAME}: 3 problem(s)" in str(info.value)


def test_not_toml_and_missing_file(mini_site: Site, tmp_path: Path) -> None:
    assert "not valid TOML" in problems_of("[roster\n", mini_site)
    with pytest.raises(RosterError, match="cannot read the file"):
        load_roster(tmp_path / "nope.toml", mini_site)


def test_policy_built_in_code_is_checked() -> None:
    with pytest.raises(ValueError, match="emergency_factor"):
        EscalationPolicy(emergency_factor=0.0)
    assert EscalationPolicy().target(0) == "responsible" and EscalationPolicy().target(99) == "command"
    assert EscalationPolicy().delay(Level.II, emergency=True) == 150.0
    with pytest.raises(ValueError, match=r"only IV\.\.I alerts are escalated"):
        EscalationPolicy().delay(Level.NORMAL)


# --- shifts: wall-clock windows in the site's timezone, wrapping at midnight ---


def local(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=SH)


def test_day_shift_edges() -> None:
    day = Shift(id="day", start="08:00", end="20:00")
    assert not day.covers(local(2025, 3, 5, 7, 59, 59, 999_999))
    assert day.covers(local(2025, 3, 5, 8, 0))
    assert day.covers(local(2025, 3, 5, 19, 59, 59))
    assert not day.covers(local(2025, 3, 5, 20, 0))


def test_overnight_shift_wraps_at_midnight() -> None:
    night = Shift(id="night", start="20:00", end="08:00")
    assert not night.covers(local(2025, 3, 5, 19, 59, 59))
    assert night.covers(local(2025, 3, 5, 20, 0))
    assert night.covers(local(2025, 3, 5, 23, 59, 59))
    assert night.covers(local(2025, 3, 6, 0, 0))
    assert night.covers(local(2025, 3, 6, 7, 59, 59))
    assert not night.covers(local(2025, 3, 6, 8, 0))
    assert not night.covers(local(2025, 3, 6, 12, 0))


def test_overnight_shift_belongs_to_the_day_it_starts() -> None:
    fri_night = Shift(id="fri", start="20:00", end="08:00", days=("fri",))
    # 2025-03-07 is a Friday
    assert fri_night.covers(local(2025, 3, 7, 22, 0))  # Friday evening
    assert fri_night.covers(local(2025, 3, 8, 3, 0))  # Saturday small hours: still Friday's shift
    assert not fri_night.covers(local(2025, 3, 7, 3, 0))  # Friday small hours: Thursday's shift, not listed
    assert not fri_night.covers(local(2025, 3, 8, 22, 0))  # Saturday evening


def test_equal_start_and_end_is_a_24_hour_shift() -> None:
    duty24 = Shift(id="24h", start="08:00", end="08:00", days=("mon",))
    # 2025-03-03 is a Monday
    assert duty24.covers(local(2025, 3, 3, 8, 0)) and duty24.covers(local(2025, 3, 4, 7, 59))
    assert not duty24.covers(local(2025, 3, 3, 7, 59)) and not duty24.covers(local(2025, 3, 4, 8, 0))


def test_on_shift_reads_epoch_time_in_the_site_timezone(mini_site: Site) -> None:
    r = load_roster(FIXTURE, mini_site)
    ann, cai, cmd = (next(d for d in r.duties if d.person == p) for p in ("ann", "cai", "cmd"))
    t = at(2025, 3, 5, 21, 0)  # 21:00 in Shanghai is 13:00 UTC: night here, day in UTC
    assert datetime.fromtimestamp(t, ZoneInfo("UTC")).hour == 13
    assert r.on_shift(cai, t) and not r.on_shift(ann, t)
    assert r.on_shift(ann, at(2025, 3, 5, 9, 0)) and not r.on_shift(cai, at(2025, 3, 5, 9, 0))
    assert r.on_shift(cai, at(2025, 3, 6, 0, 30))  # after midnight
    assert r.on_shift(cmd, t) and r.on_shift(cmd, at(2025, 3, 5, 9, 0))


# --- the default Lujiazui roster ---


@pytest.fixture(scope="module")
def lujiazui() -> tuple[Site, Roster, Router]:
    site = load_site()
    roster = load_roster(None, site)
    return site, roster, Router(roster, site)


# 2025-03-05 is a Wednesday, 2025-03-08 a Saturday (the weekend reinforcement works Saturday evenings)
@pytest.mark.parametrize("day", [5, 8])
@pytest.mark.parametrize("hour", [3, 9, 15, 21])
def test_default_roster_covers_every_zone(lujiazui: tuple[Site, Roster, Router], day: int, hour: int) -> None:
    site, _, router = lujiazui
    now = at(2025, 3, day, hour, 0)
    command = router.command(now)
    assert command and all(r.role in ("command", "operator") for r in command)
    for zone in site.zones.values():
        officers = router.responsible(zone.id, now)
        assert officers and all(r.role == "officer" for r in officers), zone.id
        leaders = router.grid_leaders(zone.id, now)
        assert leaders and all(r.role == "grid_leader" for r in leaders), zone.id
        assert router.zones_of(leaders[0].person) is not None
        assert zone.id in (router.zones_of(leaders[0].person) or ())
    assert router.gaps(now) == []


def test_default_roster_shift_changes_leave_no_gap(lujiazui: tuple[Site, Roster, Router]) -> None:
    _, _, router = lujiazui
    for h, m, s in ((7, 59, 59), (8, 0, 0), (19, 59, 59), (20, 0, 0), (0, 0, 0), (23, 59, 59)):
        assert router.gaps(at(2025, 3, 5, h, m, s)) == [], (h, m, s)


def test_default_roster_shape(lujiazui: tuple[Site, Roster, Router]) -> None:
    site, roster, _ = lujiazui
    # every riverside segment has a patrol whose duty names it, 2-3 segments per duty
    for seg in site.riverside():
        patrols = [d for d in roster.duties if seg.id in d.zones]
        assert patrols, seg.id
        assert all(2 <= len(d.zones) <= 3 for d in patrols)
    assert len(site.riverside()) == 10
    # every grid has a day leader of its own
    for g in site.grids:
        assert any(d.grids == (g,) and roster.people[d.person].role == "grid_leader" for d in roster.duties), g
    # placeholders only: local channels, no tokens
    for p in roster.people.values():
        assert p.token_sha256 is None
        assert p.channels and all("127.0.0.1" in c for c in p.channels), p.id


def test_default_roster_specific_duties_win(lujiazui: tuple[Site, Roster, Router]) -> None:
    _, _, router = lujiazui
    wed_noon, sat_21 = at(2025, 3, 5, 12), at(2025, 3, 8, 21)
    assert [r.person for r in router.responsible("pearl-ring-bridge", wed_noon)] == ["lfc-bridge-d"]
    assert [r.person for r in router.responsible("metro-exit-1", wed_noon)] == ["lfc-ring-d"]
    assert [r.person for r in router.responsible("shipyard-1862", wed_noon)] == ["rsb-blocks-d"]
    assert [r.person for r in router.responsible("riverside-s08", wed_noon)] == ["rsb-fudu-d"]
    assert [r.person for r in router.responsible("riverside-s05", sat_21)] == ["rsb-tip-n", "rsb-tip-e"]
    assert [r.person for r in router.responsible("riverside-s05", at(2025, 3, 5, 21))] == ["rsb-tip-n"]


def test_with_tokens_gives_logins_on_the_shipped_roster(mini_site: Site) -> None:
    import doctest

    import alerts.roster
    from alerts.roster import default_roster_path, token_hash, with_tokens

    assert doctest.testmod(alerts.roster).failed == 0
    text = with_tokens(default_roster_path().read_text(encoding="utf-8"), {"lfc-bridge-d": "t-1"})
    assert text.count("token_sha256 = ") == 1 and f'token_sha256 = "{token_hash("t-1")}"' in text
    with pytest.raises(ValueError, match="'nobody'"):
        with_tokens(text, {"nobody": "t-2"})
