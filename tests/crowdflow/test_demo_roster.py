"""`make demo`'s officer logins: a copy of the shipped roster where only the chosen people can sign in, each with
this run's own token (kept as its hash, never in the file)."""

from __future__ import annotations

from pathlib import Path

from alerts.roster import load_roster, token_hash
from crowdflow.cli import demo_roster
from domain.loader import load_site


def test_demo_roster_gives_the_chosen_officers_their_own_tokens(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "roster.toml"
    logins = demo_roster(path, ("lfc-bridge-d", "rsb-tip-n"))
    roster = load_roster(path, load_site())
    signed = {pid: p.token_sha256 for pid, p in roster.people.items() if p.token_sha256}
    assert signed == {"lfc-bridge-d": token_hash(logins[0][2]), "rsb-tip-n": token_hash(logins[1][2])}
    assert logins[0][1] == "pearl-ring-bridge" and logins[0][2] != logins[1][2]
    assert logins[0][2] not in path.read_text(encoding="utf-8")
