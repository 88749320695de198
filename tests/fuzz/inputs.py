"""Hypothesis strategies for hostile input: MQTT messages, TOML files mutated from valid ones, recorded CSVs.

Mutations start from the repo's own valid files, so most inputs get past the parser and exercise the checks
behind it: keys dropped, duplicated, retyped, added or misspelt, ids mistyped, values NaN, infinite, huge or
nested hundreds deep, then, sometimes, the text itself cut, spliced or sprinkled with bytes.
"""

from __future__ import annotations

import copy
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from tests.fuzz import toml_text

ROOT = Path(__file__).resolve().parents[2]
SITE_TEXT = (ROOT / "tests" / "fixtures" / "mini_site.toml").read_text(encoding="utf-8")
ROSTER_TEXT = (ROOT / "tests" / "fixtures" / "mini_roster.toml").read_text(encoding="utf-8")
CONFIG_TEXT = """
[mqtt]
host = "127.0.0.1"
port = 1883
client_id = "crowdflow-service"
qos = 1
[influx]
url = ""
api = "auto"
[service]
site = ""
tick_s = 5
lateness_s = 120
clock = "wall"
[dashboard]
port = 8000
allowed_origins = ["http://127.0.0.1:8000"]
[alerts]
max_attempts = 5
deliver = true
"""

# Python that would do harm if any loader evaluated it: loaders must keep it as plain text.
CODE_STRINGS = (
    "__import__('os').system('touch /tmp/crowdflow-pwned')",
    "!!python/object/apply:os.system ['touch /tmp/crowdflow-pwned']",
    "{{ config.__class__.__init__.__globals__ }}",
    "${jndi:ldap://example.invalid/a}",
    "eval(compile('1','x','eval'))",
)
LOCAL_TIMES = ("2026-05-01T12:00:00", "2026-05-01 12:00", "01/05/2026 12:00", "2026-03-29T02:30:00")
HUGE_INTS = (2**31, 2**53, 2**63, 2**64, 10**30, -(2**63) - 1)
SPECIAL_FLOATS = (float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324)


def nested(depth: int, leaf: object = 1) -> object:
    """`depth` arrays one inside the other: deep enough and a recursive parser runs out of stack."""
    out: object = leaf
    for _ in range(depth):
        out = [out]
    return out


# --- values of every shape and size -------------------------------------------------------------------------

scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(HUGE_INTS),
    st.floats(),
    st.sampled_from(SPECIAL_FLOATS),
    st.text(max_size=30),
    st.sampled_from(CODE_STRINGS + LOCAL_TIMES + ("", " ", "NaN", "Infinity", "1e999", "-1", "0x10", "１２"))
    | st.booleans()
    | st.none(),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Deep enough to pass every depth bound of ours; the thousands of levels a parser's stack cannot take are
# written as text (deep_toml, payloads) so that the generators here need not recurse through them.
deep = st.integers(2, 120).map(nested)
any_value = st.one_of(scalars, json_like, deep)
toml_values = any_value.map(lambda v: _toml_safe(v))


def _toml_safe(v: object) -> object:
    """TOML has no null: None becomes an empty table (still the wrong type for every field)."""
    if v is None:
        return {}
    if isinstance(v, list):
        return [_toml_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _toml_safe(x) for k, x in v.items()}
    return v


# --- MQTT messages ------------------------------------------------------------------------------------------

GOOD_TOPICS = (
    "dt/crowdflow/riverside/seg-1/seg1-west/count",
    "dt/crowdflow/riverside/seg-1/seg1-east/total",
    "dt/crowdflow/riverside/plaza/plaza-cam/density",
    "dt/crowdflow/riverside/plaza/plaza-cam/status",
    "dt/crowdflow/riverside/seg-2/seg2-gate/count",
)
# The Ingestor test keeps one stream clean: garbage never uses this sensor.
CLEAN_SENSOR = "plaza-area"
CLEAN_TOPIC = "dt/crowdflow/riverside/plaza/plaza-area/occupancy"


@st.composite
def topics(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(GOOD_TOPICS))
    parts = base.split("/")
    how = draw(st.integers(0, 7))
    if how == 0:
        return base
    if how == 1:  # a wildcard, a control character or odd unicode in one level
        i = draw(st.integers(0, 5))
        bad = draw(st.sampled_from(["+", "#", "\x00", "\n", "\x1b[31m", "\u202e", "\u200b", "ｄｔ", "É", " "]))
        parts[i] = draw(st.sampled_from([bad, parts[i] + bad, bad + parts[i]]))
        return "/".join(parts)
    if how == 2:  # wrong depth
        return "/".join(draw(st.sampled_from([parts[:-1], [*parts, "x"], ["", *parts], parts[:3], [*parts, ""]])))
    if how == 3:  # another sensor's or an unknown sensor's place in the tree
        parts[draw(st.integers(2, 5))] = draw(st.sampled_from(["ghost", "seg-2", "laoshan", "occupancy", ""]))
        return "/".join(parts)
    if how == 4:
        return base.upper()
    if how == 5:
        return "/".join(parts) * draw(st.integers(2, 300))  # very long
    return draw(st.text(max_size=80))


_FIELD_NAMES: tuple[str, ...] = ("v", "sensor", "ts", "seq", "in", "out", "interval_s", "in_total", "out_total")
_FIELD_NAMES += ("count", "density", "state", "detail")
_KIND_FIELDS: dict[str, dict[str, object]] = {
    "count": {"in": 3, "out": 1, "interval_s": 60},
    "total": {"in_total": 100, "out_total": 40},
    "occupancy": {"count": 12},
    "density": {"density": 1.5},
    "status": {"state": "online", "detail": "ok"},
}


def _good_fields(topic: str) -> dict[str, object]:
    parts = topic.split("/")
    sensor, kind = (parts[4], parts[5]) if len(parts) == 6 else ("seg1-west", "count")
    body: dict[str, object] = {"v": 1, "sensor": sensor, "ts": "2026-05-01T12:00:00+08:00", "seq": 1}
    return body | _KIND_FIELDS.get(kind, {})


@st.composite
def payloads(draw: st.DrawFn, topic: str) -> bytes:
    how = draw(st.integers(0, 9))
    if how == 0:
        return draw(st.binary(max_size=300))
    if how == 1:  # deep nesting, around the depth bound and far beyond it
        depth = draw(st.integers(1, 3000))
        opener = draw(st.sampled_from([b"[", b'{"a":', b'{"sensor":']))
        return opener * depth + b"1" + (b"]" if opener == b"[" else b"}") * draw(st.sampled_from([0, depth]))
    if how == 2:  # around the size bound
        pad = draw(st.sampled_from([3900, 4000, 4096, 4097, 10_000, 70_000]))
        return json.dumps({**_good_fields(topic), "detail": "x" * pad}).encode()
    if how == 3:  # JSON literals json.dumps would not write
        lit = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 400, "1" + "0" * 30]))
        name = draw(st.sampled_from(_FIELD_NAMES))
        text = json.dumps({**_good_fields(topic), name: "@@"}).replace('"@@"', lit)
        return text.encode()
    fields = _good_fields(topic)
    for _ in range(draw(st.integers(0 if how < 6 else 1, 4))):
        op = draw(st.integers(0, 3))
        name = draw(st.sampled_from(_FIELD_NAMES) | st.text(max_size=8))
        if op == 0:
            fields.pop(name, None)
        elif op == 1 and name in fields:  # a number sent as a string, or a string that is not a number
            was = fields[name]
            fields[name] = draw(st.sampled_from([str(was), f" {was} ", f"{was}.5", "", "12a"]))
        else:
            fields[name] = draw(any_value)
    try:
        text = json.dumps(fields, ensure_ascii=draw(st.booleans()))
    except (ValueError, RecursionError):
        text = "{}"
    raw = text.encode("utf-8", errors="surrogatepass")
    if how == 9:  # and then cut or corrupt the bytes
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=8)) + raw[cut + draw(st.integers(0, 4)) :]
    return raw


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    t = draw(topics())
    # The body mostly matches a good topic, so the checks past the topic are reached.
    body_topic = t if t in GOOD_TOPICS else draw(st.sampled_from(GOOD_TOPICS))
    return t, draw(payloads(body_topic))


garbage_messages = messages().filter(lambda m: CLEAN_SENSOR not in m[0])


@dataclass
class IngestCase:
    """Garbage with a clean stream woven through it: None in `items` is the clean stream's next message."""

    items: list[tuple[str, bytes] | None]
    # Seconds between messages: garbage carries timestamps of any age, the clean stream is always fresh.
    step_s: float = 1.0
    tick_every: int = 0  # call expire() every n messages (0: never)


@st.composite
def ingest_cases(draw: st.DrawFn) -> IngestCase:
    garbage: list[tuple[str, bytes] | None] = list(draw(st.lists(garbage_messages, max_size=25)))
    items = draw(st.permutations(garbage + [None] * draw(st.integers(1, 6))))
    return IngestCase(
        items=list(items),
        step_s=draw(st.sampled_from([0.0, 1.0, 30.0, 400.0])),
        tick_every=draw(st.integers(0, 5)),
    )


# --- TOML files mutated from valid ones ---------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _paths(node: object, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = []
    items: list[tuple[str | int, object]] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    for k, v in items:
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k))
    return out


def _get(doc: object, path: Path_) -> object:
    for k in path:
        doc = doc[k]  # type: ignore[index]
    return doc


def _hints(doc: object, path: Path_) -> list[str]:
    """What an error about this path should name: its key or its parent's, or the id that sat there."""
    keys = [k for k in path if isinstance(k, str)]
    out = keys[-2:]
    out += [k[:-3] + "y" if k.endswith("ies") else k.rstrip("s") for k in out]  # "no grid_leader has a duty"
    old = _get(doc, path)
    if isinstance(old, str) and old:
        out.append(old)
    if isinstance(old, dict) and isinstance(old.get("id"), str):
        out.append(old["id"])
    return out


@dataclass
class Mutated:
    """A file's text, and the words one of which its error, if it has one, must contain (empty: anything)."""

    text: str | bytes
    hints: list[str]
    ops: list[str]

    def __repr__(self) -> str:  # shown by hypothesis on a failure: the operations first, the text after
        return f"Mutated(ops={self.ops!r}, hints={self.hints!r}, text={self.text!r})"


@st.composite
def mutated(draw: st.DrawFn, base_text: str, text_level: bool = True) -> Mutated:
    doc = tomllib.loads(base_text)
    ids = sorted({v for p in _paths(doc) if isinstance(v := _get(doc, p), str)})
    hints: list[str] = []
    ops: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _get(doc, path[:-1])
        key = path[-1]
        op = draw(st.sampled_from(["drop", "duplicate", "retype", "unknown", "typo", "swap"]))
        ops.append(f"{op} {'.'.join(map(str, path))}")
        if op == "drop":
            hints += _hints(doc, path)
            del parent[key]  # type: ignore[attr-defined]
        elif op == "duplicate" and isinstance(parent, list):
            hints += [*_hints(doc, path), "twice", "unique"]
            parent.insert(int(key), copy.deepcopy(parent[int(key)]))
        elif op == "retype" or op == "duplicate":
            hints += _hints(doc, path)
            parent[key] = draw(toml_values)  # type: ignore[index]
        elif op == "unknown":
            target = _get(doc, path)
            holder = target if isinstance(target, dict) else parent
            if isinstance(holder, dict):
                name = draw(st.sampled_from(["colour", "zone_id", "Id", "capacty", "__class__"]) | st.text(min_size=1))
                if name not in holder:
                    hints.append(name)
                    holder[name] = draw(toml_values)
        elif op == "typo":
            old = _get(doc, path)
            if isinstance(old, str):
                new = draw(st.sampled_from([old + "x", old.upper(), old[:-1], " " + old, old.replace("-", "_")]))
                if new != old:
                    hints += [new, old, *_hints(doc, path)]
                    parent[key] = new  # type: ignore[index]
        else:  # swap in another id from the same file: a reference to the wrong kind of thing
            old = _get(doc, path)
            if isinstance(old, str) and ids:
                new = draw(st.sampled_from(ids))
                hints += [new, old, *_hints(doc, path)]
                parent[key] = new  # type: ignore[index]
    written = toml_text.dumps(doc)
    text: str | bytes = written
    if text_level and draw(st.integers(0, 4)) == 0:
        raw = written.encode()
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(raw)))
            raw = (
                raw[:at]
                + draw(st.binary(max_size=6) | st.sampled_from([b"[[", b"\x00", b'"', b"\xff"]))
                + raw[at + draw(st.integers(0, 20)) :]
            )
        ops.append("bytes")
        hints = []  # anything can break: only a clear error is required
        text = raw
    return Mutated(text=text, hints=hints, ops=ops)


@st.composite
def deep_toml(draw: st.DrawFn, base_text: str) -> Mutated:
    """A valid file with one value nested hundreds of levels deep (tomllib recurses per level)."""
    depth = draw(st.integers(50, 3000))
    inline = draw(st.booleans())
    value = "{a = " * depth + "1" + "}" * depth if inline else "[" * depth + "]" * depth
    return Mutated(text=f"deep = {value}\n" + base_text, hints=[], ops=[f"deep {depth}"])


def site_files() -> st.SearchStrategy[Mutated]:
    return mutated(SITE_TEXT) | deep_toml(SITE_TEXT)


def roster_files() -> st.SearchStrategy[Mutated]:
    return mutated(ROSTER_TEXT) | deep_toml(ROSTER_TEXT)


env_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "0", "-1", "65536", "nan", "inf", "1e999", "true", "yes", "[1]", "a,b", "\x00"]),
)
env_names = st.sampled_from(
    [
        "CROWDFLOW_MQTT_PORT",
        "CROWDFLOW_MQTT_QOS",
        "CROWDFLOW_SERVICE_TICK_S",
        "CROWDFLOW_SERVICE_CLOCK",
        "CROWDFLOW_DASHBOARD_ALLOWED_ORIGINS",
        "CROWDFLOW_ALERTS_DELIVER",
        "CROWDFLOW_MQTT_HOTS",
        "CROWDFLOW_X",
        "CROWDFLOW_SERVICE_",
        "CROWDFLOW_",
        "CROWDFLOW_CONFIG",
        "PATH",
    ]
) | st.text(max_size=20).map(lambda s: "CROWDFLOW_" + s.upper())


@st.composite
def config_cases(draw: st.DrawFn) -> tuple[Mutated, dict[str, str]]:
    file = draw(mutated(CONFIG_TEXT) | deep_toml(CONFIG_TEXT))
    env = draw(st.dictionaries(env_names, env_values, max_size=3))
    return file, env


# --- recorded CSVs ------------------------------------------------------------------------------------------

_HEADERS = (
    "timestamp,value",
    "timestamp,sensor_id,count",
    "timestamp,sensor_id,in,out",
    "TIMESTAMP, Sensor_ID ,In,OUT",
    "\ufefftimestamp,sensor_id,count",
    "timestamp,sensor_id,count,count",
    "timestamp,sensor,count",
    "timestamp;sensor_id;count",
    '"timestamp","sensor_id","in","out"',
    "",
)
_TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "2024-03-04T08:00:00",
            "2024-03-04T08:01:00+08:00",
            "2024-03-04T00:02:00Z",
            "1709510400",
            "1709510460000",
            "2024-03-31T02:30:00",
            "2024-10-27T02:30:00",
            "03/04/2024 08:03",
            "0001-01-01",
            "9999-12-31T23:59",
            "",
            "NaN",
            "-1",
            "1e400",
            "99999999999999999999999",
            "2024-13-45",
            "now",
            "2024-03-04T08:00:00+99:99",
        ]
    ),
    st.integers(-(2**64), 2**64).map(str),
    st.floats().map(str),
    st.text(max_size=25),
)
_VALUES = st.one_of(
    st.integers(-5, 10_000).map(str),
    st.sampled_from(["", "NA", "nan", "null", "None", "inf", "-inf", "1e999", "1.5", "-3", "0x1F", "１２", "1,5"]),
    st.floats().map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=10),
)
_SENSORS = st.sampled_from(["seg1-west", "seg1-east", "plaza-cam", "ghost", "", " ", "a,b", 'q"q', "名"]) | st.text(
    max_size=10
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(_HEADERS))
    ncols = max(1, len(header.split(",")))
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        how = draw(st.integers(0, 6))
        if how == 0:
            rows.append("")
            continue
        cells = [draw(_TIMESTAMPS)]
        if ncols >= 3:
            cells.append(draw(_SENSORS))
        cells += [draw(_VALUES) for _ in range(max(1, ncols - len(cells)))]
        if how == 1:  # the wrong number of fields
            cells = cells[: draw(st.integers(0, len(cells)))] + [draw(_VALUES) for _ in range(draw(st.integers(0, 3)))]
        if how == 2:  # quoting, embedded newlines and quotes
            cells = ['"' + c.replace('"', '""') + draw(st.sampled_from(["", "\n", '"'])) + '"' for c in cells]
        rows.append(",".join(cells))
    text = "\n".join([header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))
    raw = text.encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    return raw


def label_files() -> st.SearchStrategy[bytes]:
    header = st.sampled_from(["series,start,end", "series,start,end,crossing", "zone,start,crossing,end,peak", "x"])
    row = st.lists(st.one_of(_TIMESTAMPS, _SENSORS), min_size=0, max_size=5).map(",".join)
    return st.tuples(header, st.lists(row, max_size=10)).map(
        lambda hr: "\n".join([hr[0], *hr[1]]).encode("utf-8", errors="surrogatepass")
    ) | st.binary(max_size=200)
