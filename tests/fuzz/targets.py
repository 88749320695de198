"""One check per untrusted-input path. Each takes one generated input, returns what became of it (one label
per message or file: "accepted" or "rejected:<reason>") and raises `Violation` when a promise is broken:
a rejection without a reason, an error that does not name the problem, an accepted value that is unusable.
Any other exception escaping a target is a crash of the code under test.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from alerts.roster import Roster, RosterError, parse_roster
from crowdflow.config import Config, ConfigError, load_config
from detect.backtest.labels import read_windows
from detect.backtest.reader import InputError, Recording, read_input
from domain.levels import GRADED
from domain.loader import SiteError, parse_site
from domain.messages import CountMsg, DensityMsg, Message, OccupancyMsg, StatusMsg, TotalMsg
from domain.site import Site
from domain.values import Reading
from ingest.decoder import ALLOWED_KINDS, MAX_INT, Decoder
from ingest.pipeline import Ingestor
from ingest.rejection import REASONS, Rejection
from tests.fuzz.inputs import CLEAN_SENSOR, CLEAN_TOPIC, IngestCase, Mutated

SITE = parse_site(
    (Path(__file__).resolve().parents[1] / "fixtures" / "mini_site.toml").read_text(encoding="utf-8")
    + '\n[[sensors]]\nid = "plaza-area"\nzone = "plaza"\nkind = "area"\n',
    "mini+area",
)
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
_DECODER = Decoder(SITE)
_KIND = {CountMsg: "count", TotalMsg: "total", OccupancyMsg: "occupancy", DensityMsg: "density", StatusMsg: "status"}
_TMP = Path(tempfile.mkdtemp(prefix="crowdflow-fuzz-"))  # the readers under test take paths
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


class Violation(AssertionError):
    """A broken promise (not a crash): the input is in the message."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise Violation(what)


# --- MQTT ---------------------------------------------------------------------------------------------------


def _rejection_problem(r: Rejection) -> str | None:
    if r.reason not in REASONS:
        return f"unknown reason {r.reason!r}"
    if not r.detail.strip():
        return "empty detail"
    if not r.detail.isprintable():  # a control character in a log line or a dead letter forges lines
        return f"detail has control characters: {r.detail!r}"
    return None


def _message_problem(m: Message, topic: str) -> str | None:
    route = SITE.sensors.get(m.sensor)
    if route is None:
        return f"accepted unknown sensor {m.sensor!r}"
    kind = _KIND[type(m)]
    if kind not in ALLOWED_KINDS[route.kind] or not topic.endswith(f"/{m.sensor}/{kind}"):
        return f"accepted {kind} from {m.sensor} on {topic!r}"
    if m.ts.tzinfo is None or not math.isfinite(m.ts.timestamp()):
        return f"accepted a timestamp without a timezone or not finite: {m.ts!r}"
    if not 0 <= m.seq <= MAX_INT:
        return f"accepted seq {m.seq}"
    ints = {
        CountMsg: ("in_", "out"),
        TotalMsg: ("in_total", "out_total"),
        OccupancyMsg: ("count",),
    }.get(type(m), ())
    for name in ints:
        if not 0 <= getattr(m, name) <= MAX_INT:
            return f"accepted {name}={getattr(m, name)}"
    if isinstance(m, CountMsg) and not (math.isfinite(m.interval_s) and m.interval_s > 0):
        return f"accepted interval_s={m.interval_s}"
    if isinstance(m, DensityMsg) and not (math.isfinite(m.density) and m.density >= 0):
        return f"accepted density={m.density}"
    return None


def reading_problem(r: Reading) -> str | None:
    if r.sensor not in SITE.sensors or r.zone != SITE.sensors[r.sensor].zone:
        return f"reading for an unknown sensor or the wrong zone: {r!r}"
    if not math.isfinite(r.ts):
        return f"reading with time {r.ts}"
    if not (0 <= r.inflow <= MAX_INT and 0 <= r.outflow <= MAX_INT):
        return f"reading with flows {r.inflow}/{r.outflow}"
    if not (math.isfinite(r.interval_s) and r.interval_s >= 0):
        return f"reading with interval {r.interval_s}"
    if r.count is not None and not 0 <= r.count <= MAX_INT:
        return f"reading with count {r.count}"
    if r.density is not None and not (math.isfinite(r.density) and r.density >= 0):
        return f"reading with density {r.density}"
    return None


def payload(case: tuple[str, bytes]) -> list[str]:
    """Decoder.decode: a valid message, or a rejection with a known reason and a one-line detail."""
    topic, raw = case
    out = _DECODER.decode(topic, raw, received_at=T0)
    if isinstance(out, Rejection):
        problem = _rejection_problem(out)
        _check(problem is None, f"{problem} for {case!r}")
        _check(out.received_at == T0 and out.topic == topic, f"rejection lost its topic or time: {out!r}")
        return [f"rejected:{out.reason}"]
    problem = _message_problem(out, topic)
    _check(problem is None, f"{problem} for {case!r}")
    return ["accepted"]


def _clean_message(seq: int, ts: float) -> bytes:
    return f'{{"v":1,"sensor":"{CLEAN_SENSOR}","ts":{ts!r},"seq":{seq},"count":{seq % 500}}}'.encode()


def ingest(case: IngestCase) -> list[str]:
    """Ingestor.feed over garbage with a clean stream woven through: no exception, every message counted as
    accepted or rejected with a reason, every Reading valid, and every clean message released exactly once."""
    rejections: list[Rejection] = []
    ing = Ingestor(SITE, on_reject=rejections.append)
    readings: list[Reading] = []
    labels: list[str] = []
    seq = 0
    for k, item in enumerate(case.items):
        now = T0 + k * case.step_s
        before = (ing.stats.accepted, len(rejections))
        if item is None:
            seq += 1
            readings += ing.feed(CLEAN_TOPIC, _clean_message(seq, now), now)
            _check(ing.stats.accepted == before[0] + 1, f"clean message {seq} not accepted: {rejections[-1:]}")
        else:
            readings += ing.feed(item[0], item[1], now)
        if len(rejections) > before[1]:
            labels.append(f"rejected:{rejections[-1].reason}")
        else:
            labels.append("accepted")
        if case.tick_every and k % case.tick_every == 0:
            readings += ing.expire(now)
    readings += ing.flush()
    s = ing.stats
    _check(s.received == len(case.items) == s.accepted + s.rejected_total, f"counts do not add up: {s.as_dict()}")
    _check(len(rejections) == s.rejected_total, "a rejection was counted but not reported, or the reverse")
    for r in rejections:
        problem = _rejection_problem(r)
        _check(problem is None, f"{problem}: {r!r}")
    for rd in readings:
        problem = reading_problem(rd)
        _check(problem is None, problem or "")
    clean = sorted(r.seq for r in readings if r.sensor == CLEAN_SENSOR)
    _check(clean == list(range(1, seq + 1)), f"clean stream released {clean}, sent 1..{seq}")
    return labels


# --- files --------------------------------------------------------------------------------------------------


def _problem_kind(first: str) -> str:
    if "not valid TOML" in first or "deep" in first:
        return "toml"
    if "UTF-8" in first:
        return "utf8"
    if any(w in first for w in ("Expected `", "missing required", "unknown field", "Invalid enum", "out of range")):
        return "type"
    return "check"


def _named(m: Mutated, message: str) -> None:
    if m.hints:
        _check(any(h in message for h in m.hints), f"error names none of {m.hints}: {message!r}")


def _problems(problems: list[str], message: str) -> None:
    _check(bool(problems) and all(p.strip() for p in problems), f"an error without problems: {message!r}")


def site(m: Mutated) -> list[str]:
    """parse_site: a usable Site, or a SiteError naming the problem."""
    try:
        s = parse_site(m.text, "fuzz.toml")
    except SiteError as e:
        _problems(e.problems, str(e))
        _named(m, str(e))
        return [f"rejected:{_problem_kind(e.problems[0])}"]
    _check_usable_site(s)
    return ["accepted"]


def _check_usable_site(s: Site) -> None:
    """What the rest of the service assumes of a loaded site."""
    try:
        ZoneInfo(s.info.timezone)
    except (ValueError, KeyError) as e:
        raise Violation(f"accepted timezone {s.info.timezone!r}: {e!r}") from e
    Decoder(s)
    for z in s.zones.values():
        for name in ("area_m2", "visit_share", "dwell_min"):
            v = getattr(z, name)
            _check(math.isfinite(v) and v >= 0, f"zone {z.id}: accepted {name}={v}")
        t = s.thresholds_for(z)
        for v in (*t.share, *t.density, t.hysteresis, t.min_duration_s):
            _check(math.isfinite(v) and v >= 0, f"zone {z.id}: accepted thresholds {t!r}")
    for sn in s.sensors.values():
        _check(math.isfinite(sn.interval_s) and sn.interval_s > 0, f"sensor {sn.id}: accepted {sn.interval_s=}")
        s.topic_of(sn, "status")
    _check(s.info.peak_day_visits > 0, f"accepted peak_day_visits={s.info.peak_day_visits}")


def roster(m: Mutated) -> list[str]:
    """parse_roster against the mini site: a usable Roster, or a RosterError naming the problem."""
    try:
        r = parse_roster(m.text, SITE, "fuzz_roster.toml")
    except RosterError as e:
        _problems(e.problems, str(e))
        _named(m, str(e))
        return [f"rejected:{_problem_kind(e.problems[0])}"]
    _check_usable_roster(r)
    return ["accepted"]


def _check_usable_roster(r: Roster) -> None:
    for d in r.duties:
        for hour in range(0, 24 * 7, 5):
            r.on_shift(d, T0 + hour * 3600)
    for lv in GRADED:
        for emergency in (False, True):
            v = r.policy.delay(lv, emergency), r.policy.ack_ttl(lv, emergency), r.policy.repeat(emergency)
            _check(all(math.isfinite(x) and x > 0 for x in v), f"accepted escalation waits {v}")


def config(case: tuple[Mutated, dict[str, str]]) -> list[str]:
    """load_config with a file and environment: a Config, or a ConfigError naming the problem."""
    m, env = case
    path = _TMP / f"config-{os.getpid()}.toml"
    path.write_bytes(m.text.encode() if isinstance(m.text, str) else m.text)
    try:
        cfg = load_config(path, env=env)
    except ConfigError as e:
        _check(bool(str(e).strip()), "an empty ConfigError")
        if not env:  # a bad environment variable may be reported before the file's own problem
            _named(m, str(e))
        return [f"rejected:{_problem_kind(str(e))}"]
    _check(isinstance(cfg, Config), f"load_config returned {cfg!r}")
    out_of_range = config_ranges(cfg)
    _check(not out_of_range, f"load_config accepted settings no service could run with: {out_of_range}")
    return ["accepted"]


def config_ranges(cfg: Config) -> list[str]:
    """Settings a Config holds that no service could run with (ports, QoS, tick and lateness)."""
    out = []
    for name, v, ok in (
        ("mqtt.port", cfg.mqtt.port, 0 < cfg.mqtt.port < 65536),
        ("mqtt.qos", cfg.mqtt.qos, cfg.mqtt.qos in (0, 1, 2)),
        ("dashboard.port", cfg.dashboard.port, 0 <= cfg.dashboard.port < 65536),
        ("service.tick_s", cfg.service.tick_s, math.isfinite(cfg.service.tick_s) and cfg.service.tick_s > 0),
        (
            "service.lateness_s",
            cfg.service.lateness_s,
            math.isfinite(cfg.service.lateness_s) and cfg.service.lateness_s >= 0,
        ),
        ("alerts.max_attempts", cfg.alerts.max_attempts, cfg.alerts.max_attempts >= 1),
    ):
        if not ok:
            out.append(f"{name}={v}")
    return out


def _csv_kind(message: str) -> str:
    for key, label in (("header", "header"), ("UTF-8", "utf8"), ("no usable rows", "no_rows"), ("parse", "parse")):
        if key in message:
            return label
    return "other"


def backtest_csv(case: tuple[bytes, bool]) -> list[str]:
    """read_input: a consistent Recording with every bad row accounted for, or an InputError saying why."""
    raw, with_site = case
    path = _TMP / f"rec-{os.getpid()}.csv"
    path.write_bytes(raw)
    try:
        rec = read_input(path, site=SITE if with_site else None)
    except InputError as e:
        _check(bool(e.message.strip()) and str(path) in str(e), f"unclear InputError: {e!s}")
        return [f"rejected:{_csv_kind(e.message)}"]
    _check_recording(rec)
    return ["accepted"]


def _check_recording(rec: Recording) -> None:
    import numpy as np

    _check(rec.rows > 0, "a Recording without rows")
    _check(bool(np.isfinite(rec.ts).all() and np.isfinite(rec.value).all()), "non-finite time or value kept")
    _check(len(rec.names) == len(rec.info) == len(rec.bounds) - 1, "series lists disagree")
    _check(bool((np.diff(rec.bounds) >= 0).all()) and rec.bounds[-1] == rec.rows, f"bad bounds {rec.bounds}")
    for i in range(len(rec.names)):
        seg = rec.ts[rec.bounds[i] : rec.bounds[i + 1]]
        _check(bool((np.diff(seg) > 0).all()), f"series {rec.names[i]!r} not strictly increasing in time")
    _check(all(b.reason.strip() and b.line >= 2 for b in rec.bad_examples), f"bad rows {rec.bad_examples}")
    _check(rec.bad_rows >= len(rec.bad_examples), "fewer bad rows counted than listed")


def labels(raw: bytes) -> list[str]:
    """read_windows (backtest labels): windows, or an InputError saying why."""
    path = _TMP / f"labels-{os.getpid()}.csv"
    path.write_bytes(raw)
    try:
        windows = read_windows(path, "Asia/Shanghai")
    except InputError as e:
        _check(bool(e.message.strip()), f"unclear InputError: {e!s}")
        return [f"rejected:{_csv_kind(e.message)}"]
    _check(all(w.start <= w.end for w in windows), "a window ends before it starts")
    return ["accepted"]
