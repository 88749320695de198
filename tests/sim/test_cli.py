from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.__main__ import main
from tests.conftest import FIXTURES


def test_dry_run_writes_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = str(FIXTURES / "mini_site.toml")
    assert (
        main(["--site", site, "dry", "nye", "--start", "23:00", "--duration", "600", "--out", str(tmp_path)])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenario"] == "nye" and summary["messages"] > 0
    assert (tmp_path / "truth_windows.csv").read_text().count("seg-") >= 1


def test_errors_exit_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(FIXTURES / "mini_site.toml"), "dry", "nosuch"]) == 2
    assert "shipped scenarios" in capsys.readouterr().err
