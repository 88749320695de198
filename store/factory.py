"""Open the store the configuration asks for: the embedded one when no URL is set, otherwise InfluxDB 1.x or
2.x/3.x, told apart by the X-Influxdb-Version header of GET /ping unless `api` says which.

    >>> store = open_store(None)  # no server to set up: memory only, nothing persisted
    >>> type(store).__name__
    'EmbeddedStore'
    >>> store.close()
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx

from domain.site import Site
from store.base import Store, StoreConfigError, StoreUnreachableError
from store.embedded import EmbeddedStore
from store.influx_v1 import InfluxV1Store
from store.influx_v2 import InfluxV2Store
from store.spool import DEFAULT_MAX_BYTES
from store.spool_location import adopt, adopt_legacy, destination_dir, others_pending
from store.writer import WriterSettings

log = logging.getLogger(__name__)

Api = Literal["auto", "v1", "v2"]
_MAJOR = re.compile(r"^\s*v?(\d+)\.")
# Beside the embedded store's file, in the service's data directory; a directory per destination inside it
# (store/spool_location.py).
SPOOL_DIR = "influx-spool"


def detect_api(url: str, *, timeout_s: float = 5.0) -> Literal["v1", "v2"]:
    """ "v1" for InfluxDB 1.x, "v2" for 2.x and 3.x (both take /api/v2/write), from GET /ping."""
    try:
        r = httpx.get(f"{url.rstrip('/')}/ping", timeout=timeout_s)
    except httpx.HTTPError as err:
        raise StoreUnreachableError(
            f"InfluxDB at {url} did not answer GET /ping ({type(err).__name__}: {err}). Start it, fix the "
            "store URL, or leave the URL unset to use the embedded store."
        ) from err
    version = r.headers.get("X-Influxdb-Version", "")
    m = _MAJOR.match(version)
    if m is None:
        raise StoreConfigError(
            f"{url} answered /ping with HTTP {r.status_code} but no InfluxDB version header "
            f"(X-Influxdb-Version: {version!r}); is it InfluxDB? If so, set the API explicitly "
            "(api='v1' or 'v2')."
        )
    return "v1" if int(m.group(1)) == 1 else "v2"


def _choose_api(
    url: str, api: Api, token: str | None, *, spooling: bool, timeout_s: float
) -> tuple[Literal["v1", "v2"], bool]:
    """The API to speak, and whether the server said so. "auto" asks the server; when it cannot answer and
    points can wait on disk, the settings decide (a 2.x/3.x server needs a token, 1.x does not), so a service
    restarted during an InfluxDB outage still starts, keeps ingesting and alerting, and spools until the
    server is back."""
    if api != "auto":
        return api, False
    try:
        return detect_api(url, timeout_s=timeout_s), True
    except StoreUnreachableError as err:
        if not spooling:
            raise
        guess: Literal["v1", "v2"] = "v2" if token else "v1"
        log.warning(
            "%s; assuming the %s API from the settings (%s) and spooling to disk until it answers. Set "
            "[influx] api to say which for certain.",
            err, guess, "a token is set" if token else "no token is set",
        )  # fmt: skip
        return guess, False


def open_store(
    url: str | None,
    *,
    database: str = "crowdflow",
    token: str | None = None,
    org: str | None = None,
    bucket: str | None = None,
    api: Api = "auto",
    embedded_path: Path | None = None,
    username: str | None = None,
    password: str | None = None,
    site: Site | None = None,
    timeout_s: float = 5.0,
    spool_max_bytes: int = DEFAULT_MAX_BYTES,
) -> Store:
    """None → EmbeddedStore(embedded_path); an http(s) URL → InfluxV1Store or InfluxV2Store.

    `site` gives the grid and kind tags of each zone (InfluxDB stores); `database` is the 1.x database.
    The InfluxDB stores spool to disk while the server is unreachable, in `influx-spool/<destination>/` beside
    `embedded_path` (the service's data directory: no setting of its own; one directory per API, database or
    bucket and server, see store/spool_location.py), at most `spool_max_bytes` (docs/storage.md); a spool
    left directly in `influx-spool/` by an earlier version is moved into the destination's directory and
    replayed there. Without an `embedded_path` they buffer in memory only. With a spool, the store opens
    while the server is down and spools until it answers; with "auto" the API is then taken from the
    settings (a token means 2.x/3.x), logged as a guess.
    """
    if not url:
        return EmbeddedStore(embedded_path)
    if not url.startswith(("http://", "https://")):
        raise StoreConfigError(
            f"store URL {url!r} must start with http:// or https:// (e.g. http://localhost:8086), "
            "or be unset for the embedded store"
        )
    try:
        _ = urlsplit(url).port  # out of range or not a number: said here, not as a bare ValueError later
    except ValueError as err:
        raise StoreConfigError(f"store URL {url!r} has a bad port ({err}); e.g. http://localhost:8086") from err
    if api not in ("auto", "v1", "v2"):
        raise StoreConfigError(f"api must be 'auto', 'v1' or 'v2', not {api!r}")
    spool_root = embedded_path.parent / SPOOL_DIR if embedded_path is not None else None
    chosen, detected = _choose_api(url, api, token, spooling=spool_root is not None, timeout_s=timeout_s)
    writer = WriterSettings(spool_max_bytes=spool_max_bytes)
    # An earlier start may have guessed the other API while the server was down and spooled under that API's
    # directory: the points are for this same server and these settings, so they are replayed here. Moved
    # only once the chosen store's settings are complete (below), so a config error strands nothing.
    guessed = (
        _other_api_dir(spool_root, chosen, url=url, database=database, bucket=bucket, org=org) if detected else None
    )
    if chosen == "v1":
        return InfluxV1Store(
            url,
            database,
            username=username,
            password=password,
            site=site,
            timeout_s=timeout_s,
            spool_dir=_spool_dir(spool_root, api="v1", url=url, name=database, guessed=guessed),
            writer=writer,
        )
    missing = [name for name, value in (("token", token), ("org", org), ("bucket", bucket)) if not value]
    if missing or token is None or org is None or bucket is None:
        raise StoreConfigError(
            f"InfluxDB at {url} speaks the 2.x/3.x API, which needs an API token, an organisation and a "
            f"bucket; missing: {', '.join(missing)}. Set them (token=, org=, bucket=), or use a 1.x server."
        )
    return InfluxV2Store(
        url,
        token,
        org,
        bucket,
        site=site,
        timeout_s=timeout_s,
        spool_dir=_spool_dir(spool_root, api="v2", url=url, name=bucket, org=org, guessed=guessed),
        writer=writer,
    )


def _other_api_dir(
    root: Path | None, chosen: Literal["v1", "v2"], *, url: str, database: str, bucket: str | None, org: str | None
) -> Path | None:
    """Where a store of the API not `chosen`, with these settings, would have spooled (None: no spool, or no
    such store could have been opened: 2.x needs a bucket)."""
    if root is None:
        return None
    if chosen == "v2":
        return destination_dir(root, api="v1", url=url, name=database)
    return destination_dir(root, api="v2", url=url, name=bucket, org=org) if bucket else None


def _spool_dir(
    root: Path | None,
    *,
    api: Literal["v1", "v2"],
    url: str,
    name: str,
    org: str | None = None,
    guessed: Path | None = None,
) -> Path | None:
    """This destination's spool directory under `root` (None: no spool), with an earlier version's spool
    moved into it, then the spool of a wrong guess of the API (`guessed`), oldest first; spools of other
    destinations are left alone, and said to be waiting."""
    if root is None:
        return None
    target = destination_dir(root, api=api, url=url, name=name, org=org)
    try:
        adopt_legacy(root, target)
    except OSError as err:  # what is not moved yet stays where it was, for the next start: not a reason to stop
        log.error("could not move the InfluxDB spool an earlier version left in %s to %s: %s", root, target, err)
    if guessed is not None and guessed != target:
        try:
            adopt(guessed, target, f"spooled under the other API while the server was down (it speaks {api})")
        except OSError as err:  # left where it is, and tried again at the next start
            log.error("could not move the InfluxDB spool %s to %s: %s", guessed, target, err)
    for other in others_pending(root, target):
        log.warning(
            "the InfluxDB spool %s holds points for another destination than this store's (%s); only a store "
            "writing to that destination replays them",
            other,
            target.name,
        )
    return target
