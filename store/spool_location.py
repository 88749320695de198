"""Where a store's disk spool lives: one directory per destination under `<data_dir>/influx-spool/`, so points
spooled for one database, bucket or server are never replayed into another (two services sharing a data
directory, or one service whose settings moved to another destination).

    influx-spool/v1-crowdflow-influx.example.org_8086-3f2a9c1b/   # api, database or bucket, host_port, hash

The hash covers the API, the URL (scheme, host, port, path; never credentials), the organisation (2.x/3.x)
and the exact database or bucket name, so two destinations never share a directory even when their names
differ only in characters that are not safe in a file name.

Versions before this layout spooled into `influx-spool/` itself. `adopt_legacy` moves such a spool into the
configured destination's directory the first time a store opens there, so it is replayed once, to the
destination the service is configured for (docs/storage.md). `adopt` does the same for the directory of an
API that `api = "auto"` guessed while the server was down, once the server says it speaks the other one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def destination_dir(root: Path, *, api: Literal["v1", "v2"], url: str, name: str, org: str | None = None) -> Path:
    """The spool directory under `root` for one destination: `name` is the 1.x database or the 2.x bucket."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    where = f"{parts.scheme.lower()}://{host}:{port}{parts.path.rstrip('/')}"
    digest = hashlib.sha256("\n".join((api, where, org or "", name)).encode()).hexdigest()[:8]
    readable = "-".join((api, _safe(name, 64), _safe(f"{host}_{port}", 64)))
    return root / f"{readable}-{digest}"


def _safe(text: str, limit: int) -> str:
    return _UNSAFE.sub("_", text).strip("._")[:limit] or "_"


def _segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.seg") if p.stem.isdigit())


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[bool]:
    """The spool lock of `directory` (the one `Spool` holds while open), without waiting: False if it is held."""
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _cursor(directory: Path) -> tuple[int, int]:
    """(segment, offset) of a spool's cursor file; (-1, 0) without one."""
    try:
        c = json.loads((directory / "cursor").read_text())
        return int(c["segment"]), int(c["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1, 0


def adopt_legacy(root: Path, target: Path) -> int:
    """Move a spool left directly in `root` by an earlier version into `target` (`adopt`)."""
    return adopt(root, target, "an earlier version left", busy="an older crowdflow?")


def adopt(source: Path, target: Path, what: str, *, busy: str = "another crowdflow on this data directory?") -> int:
    """Move the spool in `source` into `target`, behind what `target` holds; how many segments were moved.
    Call it before a `Spool` opens `target`. `what` says in the log whose spool it was.

    The legacy spool's replayed part is left behind (its head segment is copied from the cursor on), so no
    cursor has to be merged; segments are renumbered after the target's own, oldest first. Each step is a
    rename, or a copy renamed into place before its source is deleted, so a crash midway leaves every record
    in one of the two places and the next open carries on (a crash in the one copy step can replay that
    segment's records twice, which InfluxDB absorbs: a point with the same series and time overwrites itself).
    Skipped, with a warning, while an older version still has the legacy spool open.
    """
    if not source.is_dir() or not _segments(source):
        return 0
    with _locked(source) as got_source:
        if not got_source:
            log.warning(
                "the InfluxDB spool in %s is in use by another process (%s); its points are left there and not "
                "replayed by this one",
                source,
                busy,
            )
            return 0
        target.mkdir(parents=True, exist_ok=True)
        with _locked(target) as got_target:
            if not got_target:
                return 0  # another process writes to this destination; the Spool's own lock says so
            moved = _move_segments(source, target)
    if moved:
        log.warning(
            "moved %d segment(s) of the InfluxDB spool %s in %s to %s; they are replayed to the configured "
            "destination before new points",
            moved,
            what,
            source,
            target,
        )
    return moved


def _move_segments(root: Path, target: Path) -> int:
    head_seq, head_off = _cursor(root)
    own = [int(p.stem) for p in _segments(target)]
    next_seq = max([*own, _cursor(target)[0], -1]) + 1  # at and below the target's cursor counts as replayed
    moved = 0
    for path in _segments(root):
        seq = int(path.stem)
        if seq < head_seq:  # replayed in full; a crash came before its deletion
            path.unlink(missing_ok=True)
            continue
        dest = target / f"{next_seq:012d}.seg"
        next_seq += 1
        if seq == head_seq and head_off > 0:
            tmp = dest.with_suffix(".seg.tmp")
            with open(path, "rb") as src, open(tmp, "wb") as out:
                src.seek(head_off)
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
            path.unlink()
        else:
            os.replace(path, dest)
        moved += 1
    (root / "cursor").unlink(missing_ok=True)
    for directory in (target, root):  # the renames themselves survive a power cut
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return moved


def others_pending(root: Path, target: Path) -> list[Path]:
    """Spool directories under `root` for other destinations that still hold segments (only a store writing to
    their destination replays them; another service on this data directory may be doing so now)."""
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and d != target and _segments(d))
