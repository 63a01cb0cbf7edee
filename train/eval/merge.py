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
    if len(reports) < 2:
        raise InputError(f"merging reports: got {len(reports)}; expected at least two report.json files")
    sources = list(sources) or [f"report {i}" for i in range(len(reports))]
    reports = select_filters(reports, rename=rename)
    first = reports[0]
    _check_same_data(reports, sources, "merging reports")
    seen: Dict[str, str] = {}
    results: List[Dict[str, Any]] = []
    replaced: Dict[str, List[str]] = {}
    for rep, src in zip(reports, sources):
        for r in rep["results"]:
            name = r["filter"]["name"]
            if name in seen:
                if not replace:
                    raise InputError(f"merging reports: filter {name!r} is in both {seen[name]} and {src}; "
                                     "expected each filter once (name them with --filter NAME=PATH, "
                                     "or --replace to keep the later measurement)")
                results = [old for old in results if old["filter"]["name"] != name]
                replaced.setdefault(seen[name], []).append(name)
            seen[name] = src
            results.append(r)

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


def select_filters(reports: Sequence[Dict[str, Any]], rename: Optional[Mapping[str, str]] = None,
                   only: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """Copies of ``reports`` with their filters renamed and, when ``only`` names any, only those filters kept.

    ``rename`` maps a filter name to the name it gets (the result records ``renamed_from``), in every
    report that holds it; ``only`` names filters as they are called after the renaming. This is how one
    filter is taken out of a run that measured several (e.g. a bundle measured beside a variant at each
    attacker seed, to be joined with ``worst_over_seeds``). A ``rename`` key or an ``only`` name that is
    in none of the reports is refused. The inputs are not changed.

    Example::

        picked = select_filters([read_report("runs/eval/pair-seed1")], rename={"shipped": "emotion"},
                                only=["emotion"])
    """
    rename, only = dict(rename or {}), list(only)
    held = sorted({r["filter"]["name"] for rep in reports for r in rep.get("results", [])})
    unused = sorted(set(rename) - set(held))
    if unused:
        raise InputError(f"merging reports: --rename {unused} matched no filter; the reports hold {held}")
    out: List[Dict[str, Any]] = []
    for rep in reports:
        rep = copy.deepcopy(rep)
        for r in rep.get("results", []):
            name = r["filter"]["name"]
            if name in rename:
                r["filter"]["name"] = rename[name]
                r["filter"]["renamed_from"] = name
        primary = rep.get("filter", {})
        if primary.get("name") in rename:
            primary.update(name=rename[primary["name"]], renamed_from=primary["name"])
        if only and "results" in rep:
            rep["results"] = [r for r in rep["results"] if r["filter"]["name"] in only]
            # the report's primary filter (the one its headline summarises) must be one it still holds
            if rep["results"] and primary.get("name") not in {r["filter"]["name"] for r in rep["results"]}:
                rep["filter"] = copy.deepcopy(rep["results"][0]["filter"])
        out.append(rep)
    if only:
        kept = {r["filter"]["name"] for rep in out for r in rep.get("results", [])}
        missing = [n for n in only if n not in kept]
        if missing:
            after = sorted({rename.get(n, n) for n in held})
            raise InputError(f"merging reports: --only {missing} matched no filter; the reports hold {after}"
                             + (" (after --rename)" if rename else ""))
    return out


def _check_same_data(reports: Sequence[Dict[str, Any]], sources: Sequence[str], what: str) -> None:
    """Refuse a report that is not a filters report, or was measured on other data than the first."""
    for rep, src in zip(reports, sources):
        if "results" not in rep or "data" not in rep:
            raise InputError(f"{what}: {src} is not a `privsdk eval` filters report (no results/data)")
    first = reports[0]
    for rep, src in zip(reports[1:], sources[1:]):
        for key in DATA_KEYS:
            if rep["data"].get(key) != first["data"].get(key):
                raise InputError(f"{what}: {src} was measured on different data ({key!r} differs from "
                                 f"{sources[0]}); expected the same --data, --split-seed, --limit, --size and --framing")


def _seed(report: Mapping[str, Any], source: str) -> int:
    seed = report.get("protocol", {}).get("settings", {}).get("seed")
    if not isinstance(seed, int):
        raise InputError(f"merging over seeds: {source} names no attacker seed (protocol.settings.seed); "
                         "expected a report written by `privsdk eval --seed N`")
    return seed


def _worst_of(by_seed: Sequence[tuple], kind: str) -> Dict[str, Dict[str, Any]]:
    """Per attacker, the seed whose reading is highest (the attacker's worst case for the filter), and every
    seed's reading beside it under ``over_seeds``."""
    out: Dict[str, Dict[str, Any]] = {}
    archs = [a for a in by_seed[0][1] if all(a in readings for _, readings in by_seed)]
    for arch in archs:
        seed, best = max(((s, readings[arch]) for s, readings in by_seed), key=lambda sr: sr[1]["balanced_accuracy"])
        out[arch] = {**copy.deepcopy(best), "seed": seed,
                     "over_seeds": [{"seed": s, "balanced_accuracy": readings[arch]["balanced_accuracy"],
                                     "auc": readings[arch].get("auc"),
                                     **({"restarts": [r["test_balanced_accuracy"] for r in readings[arch]["restarts"]]}
                                        if "restarts" in readings[arch] else {})}
                                    for s, readings in by_seed]}
    if not out:
        raise InputError(f"merging over seeds: no {kind} attacker is in every report")
    return out


def worst_over_seeds(reports: Sequence[Dict[str, Any]], sources: Sequence[str] = ()) -> Dict[str, Any]:
    """One report holding, for each filter, every attacker's worst reading over runs at different attacker seeds.

    The reports must be of the same data and split, with the same filters, each at its own attacker seed
    (``privsdk eval --seed N``). Each attacker (retrained and clean-trained, and the clean reference) is
    taken from the seed where it read the secret best, and ``over_seeds`` lists every seed's reading, so a
    figure within the attackers' spread of a target is judged by its worst seed (``docs/design-changes.md``
    #18). Utility (SSIM, identity, pose) is the first report's: it does not depend on the attackers' seed
    except through the pose regressor's own training.

    Example::

        merged = worst_over_seeds([read_report("runs/eval/seed0"), read_report("runs/eval/seed1")])
        merged["results"][0]["privacy"]["worst_attacker"]     # the highest kept reading of any seed
    """
    if len(reports) < 2:
        raise InputError(f"merging over seeds: got {len(reports)} report(s); expected at least two, "
                         "each from `privsdk eval --seed N` with its own N")
    from .report import headline, retrained_privacy

    sources = list(sources) or [f"report {i}" for i in range(len(reports))]
    first = reports[0]
    _check_same_data(reports, sources, "merging over seeds")
    seeds = [_seed(rep, src) for rep, src in zip(reports, sources)]
    if len(set(seeds)) != len(seeds):
        raise InputError(f"merging over seeds: the reports' attacker seeds are {seeds}; expected a different "
                         "--seed for each report")
    names = [[r["filter"]["name"] for r in rep["results"]] for rep in reports]
    for ns, src in zip(names[1:], sources[1:]):
        if sorted(ns) != sorted(names[0]):
            raise InputError(f"merging over seeds: {src} holds filters {sorted(ns)}, {sources[0]} holds "
                             f"{sorted(names[0])}; expected the same filters at every seed")

    results: List[Dict[str, Any]] = []
    for name in names[0]:
        per_seed = [next(r for r in rep["results"] if r["filter"]["name"] == name) for rep in reports]
        merged_result = copy.deepcopy(per_seed[0])
        attackers = _worst_of([(s, r["privacy"]["attackers"]) for s, r in zip(seeds, per_seed)], "retrained")
        privacy = merged_result["privacy"]
        privacy.update(retrained_privacy(attackers))
        privacy["worst_attacker"]["seed"] = attackers[privacy["worst_attacker"]["arch"]]["seed"]
        if all("fixed_attackers" in r["privacy"] for r in per_seed):
            privacy["fixed_attackers"] = _worst_of([(s, r["privacy"]["fixed_attackers"])
                                                    for s, r in zip(seeds, per_seed)], "clean-trained")
        merged_result["utility_seed"] = seeds[0]
        results.append(merged_result)

    clean_attackers = _worst_of([(s, rep["clean"]["attackers"]) for s, rep in zip(seeds, reports)], "clean")
    best = max(clean_attackers, key=lambda a: clean_attackers[a]["balanced_accuracy"])
    clean = {**copy.deepcopy(first["clean"]), "attackers": clean_attackers,
             "worst_attacker": {"arch": best, "seed": clean_attackers[best]["seed"],
                                **{k: clean_attackers[best].get(k) for k in ("balanced_accuracy", "auc",
                                                                             "leakage_bits")}}}
    merged = {k: v for k, v in first.items() if k not in ("results", "clean", "summary", "seconds")}
    merged.update(results=results, clean=clean, over_seeds=seeds,
                  merged_from=[{"source": src, "created": rep.get("created"), "seed": seed,
                                "settings": rep.get("protocol", {}).get("settings")}
                               for rep, src, seed in zip(reports, sources, seeds)])
    merged["summary"] = headline(merged)
    return merged
