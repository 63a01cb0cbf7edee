"""Shared helpers of the privsdk benchmarks: timing, machine description, tables, JSON.

Benchmarks never decide CI's pass/fail; they print a table and write a JSON
file that records what was measured and on which machine.

Example::

    import numpy as np
    from privsdk.bench.common import format_table, gbps, time_call, write_json
    a = np.ones(1 << 20, np.float32); b = np.empty_like(a)
    t = time_call(lambda: np.copyto(b, a), repeat=20)
    rows = [{"case": "copy 4 MB", "ms": t.median_ms, "GB/s": gbps(a.nbytes, t.median_ms)}]
    print(format_table(rows, [("case", "case", "s"), ("ms", "ms", ".3f"), ("GB/s", "GB/s", ".2f")]))
    write_json("bench/results/example.json", {"rows": rows})
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..log import get_logger

_log = get_logger(__name__)

#: A table column: (row key, header text, format spec such as ".3f" or "s").
Column = Tuple[str, str, str]


@dataclass
class Timing:
    """Wall-clock samples of one benchmarked call, in milliseconds."""

    samples_ms: List[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    def to_dict(self) -> Dict[str, Any]:
        """Summary for JSON: median, min, max and the number of samples."""
        return {"median_ms": self.median_ms, "min_ms": self.min_ms, "max_ms": self.max_ms,
                "n": len(self.samples_ms)}


def time_call(fn: Callable[[], Any], repeat: int = 30, warmup: int = 2,
              max_seconds: Optional[float] = None) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then up to ``repeat`` times timed.

    ``max_seconds`` stops early (after at least 3 timed calls) so that slow
    baselines do not dominate a benchmark's run time.
    """
    if repeat < 1:
        raise ValueError(f"repeat: expected a positive number of timed calls, got {repeat}")
    for _ in range(max(0, warmup)):
        fn()
    timing = Timing()
    start = time.perf_counter()
    for i in range(repeat):
        t0 = time.perf_counter()
        fn()
        timing.samples_ms.append((time.perf_counter() - t0) * 1e3)
        if max_seconds is not None and i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return timing


def gbps(nbytes: int, ms: float) -> float:
    """Throughput in GB/s (10⁹ bytes per second) of ``nbytes`` moved in ``ms`` milliseconds."""
    return nbytes / (ms * 1e-3) / 1e9 if ms > 0 else float("inf")


def machine_info() -> Dict[str, Any]:
    """What the numbers were measured on: CPU, core count, load, library versions."""
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        info["cpu"] = platform.processor() or "unknown"
    try:
        info["load_average"] = list(os.getloadavg())
    except (AttributeError, OSError):
        pass
    import numpy

    info["numpy"] = numpy.__version__
    try:
        from .. import __version__ as privsdk_version

        info["privsdk"] = privsdk_version
    except ImportError:  # pragma: no cover
        pass
    return info


def _cell(value: Any, spec: str) -> str:
    """One table cell: None as '-', numbers with ``spec`` (e.g. '.2f', 'd'), the rest as str."""
    if value is None:
        return "-"
    if spec and spec != "s" and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return format(value, spec)
        except ValueError:  # e.g. a float in a 'd' column
            return str(value)
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A plain-text table: one line per row, columns right-aligned (left for text)."""
    header = [title for _, title, _ in columns]
    body = [[_cell(row.get(key), spec) for key, _, spec in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    text_cols = [spec == "s" for _, _, spec in columns]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if t else c.rjust(w) for c, w, t in zip(cells, widths, text_cols)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(r) for r in body)
    return "\n".join(out)


def format_markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """The same table as GitHub markdown (for bench/RESULTS.md)."""
    out = ["| " + " | ".join(title for _, title, _ in columns) + " |",
           "|" + "|".join(" --- " if spec == "s" else " ---: " for _, _, spec in columns) + "|"]
    for row in rows:
        out.append("| " + " | ".join(_cell(row.get(k), spec) for k, _, spec in columns) + " |")
    return "\n".join(out)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: Union[str, Path], payload: Mapping[str, Any], *, add_machine: bool = True) -> Path:
    """Write ``payload`` (plus ``"machine": machine_info()``) as indented JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dict(payload)
    if add_machine and "machine" not in data:
        data["machine"] = machine_info()
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    _log.info("wrote %s", path)
    return path


__all__ = ["Column", "Timing", "time_call", "gbps", "machine_info", "format_table", "format_markdown_table",
           "write_json"]
