"""Merge ``privsdk eval`` reports measured on the same data into one report and one trade-off plot.

Each filter's attackers are trained on their own, so filters evaluated in separate runs
(e.g. a slow baseline sweep once, new filters later) are comparable when the runs used the
same data, split and subset. :func:`merge_reports` checks that, keeps every result, and
takes the strongest clean attacker of the runs as the clean reference (the conservative
choice when the runs trained different attacker families).

Example::

    from privsdk.train.eval.merge import merge_reports
    from privsdk.train.eval.report import read_report
    merged = merge_reports([read_report("runs/eval/filters"), read_report("runs/eval/baselines")])
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional, Sequence

from privsdk.errors import InputError

# what must be equal for two runs' numbers to be comparable (the rest of "data" is derived from these)
DATA_KEYS = ("name", "secret", "image_size", "sizes", "split", "subset", "framing")


def merge_reports(reports: Sequence[Dict[str, Any]], sources: Sequence[str] = (),
                  rename: Optional[Mapping[str, str]] = None, replace: bool = False) -> Dict[str, Any]:
    """One report holding the results of ``reports`` (same data and split; filter names unique).

    ``rename`` maps a filter name in the reports to the name it gets in the merged one
    (e.g. a run's ``residual:eye band`` shown as the bundle it became); every key must match a filter.
    ``replace``: a filter found in several reports keeps the later report's result (a re-measurement,
    e.g. a baseline evaluated again with more attackers) where it would otherwise be refused; the
    merged report lists what was replaced under ``merged_from[i]["replaced"]``.
    """
    rename = dict(rename or {})
    if len(reports) < 2:
        raise InputError(f"merging reports: got {len(reports)}; expected at least two report.json files")
    sources = list(sources) or [f"report {i}" for i in range(len(reports))]
    first = reports[0]
    for rep, src in zip(reports[1:], sources[1:]):
        if "results" not in rep or "data" not in rep:
            raise InputError(f"merging reports: {src} is not a `privsdk eval` filters report (no results/data)")
        for key in DATA_KEYS:
            if rep["data"].get(key) != first["data"].get(key):
                raise InputError(f"merging reports: {src} was measured on different data ({key!r} differs from "
                                 f"{sources[0]}); expected the same --data, --split-seed, --limit, --size and --framing")
    seen: Dict[str, str] = {}
    results: List[Dict[str, Any]] = []
    replaced: Dict[str, List[str]] = {}
    unused = dict(rename)
    for rep, src in zip(reports, sources):
        for r in rep["results"]:
            name = r["filter"]["name"]
            if name in rename:
                unused.pop(name, None)
                r = copy.deepcopy(r)
                r["filter"]["name"] = rename[name]
                r["filter"]["renamed_from"] = name
                name = rename[name]
            if name in seen:
                if not replace:
                    raise InputError(f"merging reports: filter {name!r} is in both {seen[name]} and {src}; "
                                     "expected each filter once (name them with --filter NAME=PATH, "
                                     "or --replace to keep the later measurement)")
                results = [old for old in results if old["filter"]["name"] != name]
                replaced.setdefault(seen[name], []).append(name)
            seen[name] = src
            results.append(r)
    if unused:
        raise InputError(f"merging reports: --rename {sorted(unused)} matched no filter; the reports hold "
                         f"{sorted(r['filter']['name'] for rep in reports for r in rep['results'])}")

    def clean_acc(rep: Dict[str, Any]) -> float:
        return float(rep.get("clean", {}).get("worst_attacker", {}).get("balanced_accuracy") or 0.0)

    strongest = max(reports, key=clean_acc)
    merged = {k: v for k, v in first.items() if k not in ("results", "clean", "summary", "seconds")}
    # a data statistic, the same for every report of this data and split: kept from whichever report has it
    floor = next((rep["pose_floor"] for rep in reports if "pose_floor" in rep), None)
    if floor is not None:
        merged["pose_floor"] = floor
    merged.update(results=results, clean=strongest.get("clean", {}),
                  merged_from=[{"source": src, "created": rep.get("created"),
                                "settings": rep.get("protocol", {}).get("settings"),
                                "filters": [r["filter"]["name"] for r in rep["results"]],
                                "clean_worst_attacker": rep.get("clean", {}).get("worst_attacker"),
                                **({"replaced": replaced[src]} if src in replaced else {})}
                               for rep, src in zip(reports, sources)])
    from .report import headline

    merged["summary"] = headline(merged)
    return merged
