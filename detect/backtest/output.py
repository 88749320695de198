"""Write RESULT.csv: `timestamp,series,value,score,level,alert`, one row per input timestamp and series.

Rows are ordered by time, then series. `timestamp` is local time in the run's timezone with its offset
(ISO 8601, e.g. 2024-01-01T08:00:00+08:00), `value` the series' value as read (summed over a zone's
sensors), `score` in [0, 1] to 4 decimals, `level` a label ("normal", "IV blue" ...), `alert` the id of the
alert open at that row ("seg-1#2") or empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from detect.backtest.reader import Recording
from detect.backtest.runner import LEVEL_LABELS, Result

COLUMNS = ("timestamp", "series", "value", "score", "level", "alert")


def iso_local(ts: npt.NDArray[np.float64], tz: str) -> npt.NDArray[np.object_]:
    """Epoch seconds → ISO 8601 local strings with offset; each distinct time formatted once, in C."""
    uniq, inv = np.unique(ts, return_inverse=True)
    whole = bool(np.all(uniq == np.round(uniq)))
    utc = pd.DatetimeIndex(pd.to_datetime(uniq, unit="s", utc=True))
    local = utc.tz_convert(tz).tz_localize(None)
    text = np.datetime_as_string(local.to_numpy(dtype="datetime64[ns]"), unit="s" if whole else "ms")
    offset_s = (local - utc.tz_localize(None)).total_seconds().to_numpy().astype(np.int64)
    offsets, which = np.unique(offset_s, return_inverse=True)  # one or two per timezone
    suffix = np.array([_offset(int(o)) for o in offsets.tolist()], dtype=str)[which]
    return np.asarray(np.char.add(text.astype(str), suffix).astype(object)[inv], dtype=object)


def _offset(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    m = abs(seconds) // 60
    return f"{sign}{m // 60:02d}:{m % 60:02d}"


def result_frame(rec: Recording, res: Result) -> pd.DataFrame:
    code = np.repeat(np.arange(len(rec.names)), np.diff(rec.bounds))
    order = np.lexsort((code, rec.ts))
    ids = np.array([a.id for a in res.alerts] + [""], dtype=object)
    labels = np.array(LEVEL_LABELS, dtype=object)
    return pd.DataFrame(
        {
            "timestamp": iso_local(rec.ts[order], rec.tz),
            "series": np.array(rec.names, dtype=object)[code[order]],
            "value": rec.value[order],
            "score": np.round(res.score[order], 4),
            "level": labels[res.level[order]],
            "alert": ids[res.alert[order]],  # -1 picks the trailing ""
        },
        columns=list(COLUMNS),
    )


def write_result(rec: Recording, res: Result, path: str | Path) -> int:
    """Write the CSV; returns the number of rows written."""
    frame = result_frame(rec, res)
    frame.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")
    return len(frame)
