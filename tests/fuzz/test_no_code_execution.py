"""Configuration, site, roster, recorded and MQTT input never executes code (issue 7, "Security").

Two halves: a scan of the source (no eval, exec, pickle, marshal, YAML or dynamic imports anywhere a file or
message is read) and the behaviour (Python written into every string of a site, roster, config, CSV or
payload comes back as that string, and the file it would have created does not appear).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from alerts.roster import parse_roster
from crowdflow.config import load_config
from detect.backtest.reader import read_input
from domain.loader import parse_site
from domain.messages import StatusMsg
from ingest.decoder import Decoder
from tests.fuzz import toml_text
from tests.fuzz.inputs import CONFIG_TEXT, ROSTER_TEXT, SITE_TEXT
from tests.fuzz.targets import SITE, T0

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "domain", "alerts", "detect", "dashboard", "sim", "store", "crowdflow")
# Modules that read files or messages someone else wrote: not even a dynamic import there.
READERS = (
    "ingest/decoder.py",
    "ingest/pipeline.py",
    "ingest/mqtt.py",
    "domain/loader.py",
    "domain/site.py",
    "alerts/roster.py",
    "alerts/measures.py",
    "crowdflow/config.py",
    "sim/scenario.py",
    "detect/backtest/reader.py",
    "detect/backtest/timestamps.py",
    "detect/backtest/labels.py",
)
UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle", "yaml", "ruamel"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__", "breakpoint"}
READER_ONLY_MODULES = {"importlib", "subprocess", "runpy", "code", "codeop"}


def unsafe_uses(source: str, *, reader: bool) -> list[str]:
    """Each line of `source` that could run code from data: `line: what`."""
    out: list[str] = []
    banned = UNSAFE_MODULES | (READER_ONLY_MODULES if reader else set())
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.module == "importlib.resources":
                continue  # reads package data files; imports nothing
            if isinstance(node, ast.ImportFrom) and node.module == "importlib":
                names = [f"importlib.{a.name}" for a in node.names if a.name != "resources"]
            for name in names:
                if name.split(".")[0] in banned:
                    out.append(f"{node.lineno}: imports {name}")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in UNSAFE_BUILTINS:
                out.append(f"{node.lineno}: calls {f.id}()")
            elif isinstance(f, ast.Attribute) and f.attr in {"import_module", "load_module"} and reader:
                out.append(f"{node.lineno}: calls .{f.attr}()")
            elif isinstance(f, ast.Attribute) and f.attr in {"eval", "unsafe_load"}:
                out.append(f"{node.lineno}: calls .{f.attr}()")  # pandas' eval/query evaluate expressions
            elif isinstance(f, ast.Attribute) and f.attr in {"system", "popen"} and reader:
                out.append(f"{node.lineno}: calls .{f.attr}()")
            elif isinstance(f, ast.Attribute) and f.attr == "query" and reader:
                out.append(f"{node.lineno}: calls .query()")
    return sorted(out, key=lambda line: int(line.split(":")[0]))


def test_the_scan_finds_what_it_looks_for() -> None:
    bad = "import pickle\nfrom yaml import load\nx = eval(s)\ndf.eval('a + b')\nimport importlib\n"
    bad += "from importlib import import_module, resources\nimportlib.import_module(name)\n"
    common = ["1: imports pickle", "2: imports yaml", "3: calls eval()", "4: calls .eval()"]
    assert unsafe_uses(bad, reader=False) == common
    assert unsafe_uses(bad, reader=True) == [
        *common,
        "5: imports importlib",
        "6: imports importlib.import_module",
        "7: calls .import_module()",
    ]
    assert unsafe_uses("from importlib import resources\nfrom importlib.resources import files\n", reader=True) == []
    assert unsafe_uses("import tomllib\ndata = tomllib.loads(text)\nre.compile('x')\n", reader=True) == []


def test_no_module_can_run_code_from_data() -> None:
    found = {}
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 50, "the scan must see the packages"
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        uses = unsafe_uses(path.read_text(encoding="utf-8"), reader=rel in READERS)
        if uses:
            found[rel] = uses
    assert found == {}, f"code that could execute data: {found}"
    missing = [r for r in READERS if not (ROOT / r).is_file()]
    assert missing == [], f"READERS lists files that moved: {missing}; update the list"


# --- behaviour: code in strings stays text -------------------------------------------------------------------


def payloads_of(canary: Path) -> list[str]:
    p = canary.as_posix()
    return [
        f"__import__('pathlib').Path('{p}').write_text('pwned')",
        f"{{{{ ''.__class__.__mro__[1].__subclasses__() }}}} !!python/object/apply:os.system ['touch {p}']",
        f'=HYPERLINK("file://{p}") ; $(touch {p}) `touch {p}`',
    ]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_code_in_site_strings_is_just_data(tmp_path: Path, which: int) -> None:
    canary = tmp_path / "pwned"
    code = payloads_of(canary)[which]
    text = SITE_TEXT.replace('name_en = "Plaza"', f"name_en = {toml_text._string(code)}")
    text = text.replace('capacity_rule = "1000 m² ÷ 0.67 m²/person"', f"capacity_rule = {toml_text._string(code)}")
    site = parse_site(text)
    assert site.zones["plaza"].name_en == code == site.zones["plaza"].capacity_rule
    assert not canary.exists()


@pytest.mark.parametrize("which", [0, 1, 2])
def test_code_in_roster_strings_is_just_data(tmp_path: Path, which: int) -> None:
    canary = tmp_path / "pwned"
    code = payloads_of(canary)[which]
    text = ROSTER_TEXT.replace('name = "Bob Bai (白)"', f"name = {toml_text._string(code)}")
    text = text.replace('name = "test roster"', f"name = {toml_text._string(code)}")
    roster = parse_roster(text, SITE)
    assert roster.people["bob"].name == code == roster.file.roster.name
    assert not canary.exists()


def test_code_in_config_and_environment_is_just_data(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    code = payloads_of(canary)[0]
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(CONFIG_TEXT.replace('host = "127.0.0.1"', f"host = {toml_text._string(code)}"), "utf-8")
    cfg = load_config(cfg_file, env={"CROWDFLOW_ALERTS_PUBLIC_URL": code})
    assert cfg.mqtt.host == code == cfg.alerts.public_url
    assert not canary.exists()


def test_code_in_a_recorded_csv_is_just_data(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    code = payloads_of(canary)[0].replace(",", ";")
    p = tmp_path / "rec.csv"
    p.write_text(f'timestamp,sensor_id,count\n2024-03-04T08:00:00,"{code}",3\n', encoding="utf-8")
    rec = read_input(p)
    assert rec.names == [code]
    assert not canary.exists()


def test_code_in_a_payload_is_just_data(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    code = payloads_of(canary)[0]
    raw = json.dumps({"sensor": "plaza-cam", "ts": T0, "seq": 1, "state": "fault", "detail": code}).encode()
    msg = Decoder(SITE).decode("dt/crowdflow/riverside/plaza/plaza-cam/status", raw)
    assert isinstance(msg, StatusMsg) and msg.detail == code
    assert not canary.exists()
