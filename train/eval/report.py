"""The JSON report of ``privsdk eval``: strict JSON (no NaN), versions, round-trippable.

Example::

    from privsdk.train.eval.report import write_report, read_report
    path = write_report({"format": "privsdk-eval-report/1", "results": []}, "runs/eval")
    read_report(path)
"""
from __future__ import annotations

import json
import math
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np

from privsdk.errors import InputError

from .framing import describe_framing

REPORT_NAME = "report.json"


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON can hold: numpy → Python, NaN / ±inf → None, tuples → lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def write_report(report: Dict[str, Any], out: Union[str, Path]) -> Path:
    """Write ``report`` as ``out`` (a ``.json`` path) or ``out/report.json``; returns the path."""
    path = Path(out)
    if path.suffix != ".json":
        path = path / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_report(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a report written by :func:`write_report` (a file or the directory holding it).

    A filter bundle (its folder or its zip; ``filter.json`` holds the report its numbers came from,
    under ``evaluation``) reads as that embedded report, so ``privsdk eval merge`` can draw a shipped
    filter beside new runs without evaluating it again. The bundle is loaded as the runtime loads it:
    a file that does not match its manifest's SHA-256 raises :class:`~privsdk.errors.BundleError`.
    """
    import zipfile

    from privsdk.bundle import MANIFEST

    p = Path(path)
    if p.is_dir():
        if not (p / REPORT_NAME).exists() and (p / MANIFEST).exists():
            return _embedded_report(p)
        p = p / REPORT_NAME
    elif p.is_file() and (zipfile.is_zipfile(p) or p.name == MANIFEST):
        return _embedded_report(p.parent if p.name == MANIFEST else p)
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"evaluation report {p}: no such file; expected a report.json from `privsdk eval`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"evaluation report {p}: not valid JSON ({exc}); expected a report.json from `privsdk "
                         "eval` or a filter bundle (its folder or zip)") from None
    if not isinstance(report, dict) or not str(report.get("format", "")).startswith("privsdk-"):
        raise InputError(f"evaluation report {p}: expected a JSON object with a privsdk 'format' field")
    return report


def _embedded_report(bundle_path: Path) -> Dict[str, Any]:
    from privsdk.bundle import MANIFEST, load_bundle

    # verified like any bundle the runtime loads: a report is only as good as the files it describes
    manifest = load_bundle(bundle_path).manifest
    report = manifest.get("evaluation")
    if not isinstance(report, dict) or not str(report.get("format", "")).startswith("privsdk-"):
        raise InputError(f"filter bundle {bundle_path}: its {MANIFEST} embeds no evaluation report; "
                         "expected a bundle made with `privsdk export --report REPORT` (or a report.json)")
    return report


def versions() -> Dict[str, Any]:
    """Versions of everything that can change a number: Python, numpy, torch, privsdk, and the optional parts."""
    import privsdk

    out: Dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "privsdk": privsdk.__version__, "numpy": np.__version__}
    for name in ("torch", "cv2", "skimage", "onnxruntime", "dlib"):
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", "unknown"))
        except ImportError:
            out[name] = None
    try:
        import torch

        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        # the CPU thread count changes the order of float sums, so the same seed trains another attacker
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        from privsdk.kernels import IMPLEMENTATION

        out["kernels"] = IMPLEMENTATION
    except ImportError:
        pass
    return out


def headline(report: Dict[str, Any]) -> Dict[str, Any]:
    """The headline numbers of the report's primary filter, beside the clean attacker and chance.

    This is what manifests show as ``evaluation.summary`` (and ``privsdk filters`` lists):
    derived from the report's own numbers, never typed in.
    """
    name = report.get("filter", {}).get("name")
    primary = next((r for r in report.get("results", []) if r["filter"].get("name") == name), None)
    if primary is None:
        return {}
    p, u = primary["privacy"], primary["utility"]
    fixed = [v["balanced_accuracy"] for v in p.get("fixed_attackers", {}).values()
             if v.get("balanced_accuracy") is not None]
    out: Dict[str, Any] = {
        "data": report.get("data", {}).get("test_set") or report.get("data", {}).get("name"),
        "retrained_attacker_balanced_accuracy": p["worst_attacker"]["balanced_accuracy"],
        "retrained_attacker_auc": p["worst_attacker"]["auc"],
        "retrained_attacker": p["worst_attacker"]["arch"],
        "clean_attacker_balanced_accuracy": report.get("clean", {}).get("worst_attacker", {}).get("balanced_accuracy"),
        "chance_balanced_accuracy": report.get("chance", {}).get("balanced_accuracy"),
        "fixed_attacker_balanced_accuracy": max(fixed) if fixed else None,
        "leakage_bits": p.get("leakage_bits"),
        "ssim": u["fidelity"]["ssim"],
        "psnr_db": u["fidelity"]["psnr_db"],
    }
    if "fidelity_to_levelled" in u:
        out["ssim_to_levelled"] = u["fidelity_to_levelled"]["ssim"]
    if "identity" in u:
        out["identity_kept_share"] = u["identity"]["share_within_0.6"]
        ver = u["identity"].get("verification")
        if ver:
            out["identity_verification_accuracy"] = ver["filtered"]["accuracy_at_threshold"]
            out["identity_verification_auc"] = ver["filtered"]["auc"]
            out["identity_verification_clean_accuracy"] = ver["clean"]["accuracy_at_threshold"]
            out["identity_verification_clean_auc"] = ver["clean"]["auc"]
            out["identity_verification_pairs"] = ver["pairs"]
    if "pose" in u:
        out["pose_mae_ratio"] = u["pose"].get("fixed_mae_ratio")
    if "pose_floor" in report:
        out["pose_floor_balanced_accuracy"] = report["pose_floor"]["balanced_accuracy"]
    return out


def unsaturated_models(report: Dict[str, Any]) -> List[str]:
    """Where in ``report`` a model ran to the epoch cap instead of stopping early ("clean/pose_training", ...).

    The protocol trains every model to saturation. One that hit ``--max-epochs`` may still have been learning:
    a capped retrained attacker makes a filter look more private than it is, a capped clean model makes the
    clean baseline (and every ratio to it) weaker than it is. Filters' results are named by the filter.

    Example::

        unsaturated_models({"clean": {"pose_training": {"epochs_used": 10, "stopped_early": False}}})
        # ['clean/pose_training']
    """
    found: List[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "epochs_used" in node and "stopped_early" in node:
                if not node["stopped_early"]:
                    found.append(path)
                return
            for key, value in node.items():
                walk(value, f"{path}/{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                name = value.get("filter", {}).get("name") if isinstance(value, dict) else None
                walk(value, f"{path}[{name if name else i}]")

    walk({k: v for k, v in report.items() if k in ("clean", "results")}, "")
    return found


def retrained_privacy(attackers: Dict[str, Any]) -> Dict[str, Any]:
    """A filter's privacy section from its retrained attackers' readings: the worst one is the headline."""
    worst = max(attackers, key=lambda a: attackers[a]["balanced_accuracy"])
    leak_arch = max(attackers, key=lambda a: attackers[a]["leakage_bits"])
    return {
        "attackers": attackers,
        "worst_attacker": {"arch": worst, **{k: attackers[worst][k] for k in ("balanced_accuracy", "auc")}},
        "leakage_bits": attackers[leak_arch]["leakage_bits"], "leakage_attacker": leak_arch,
        "infoscrub_mean_entropy_bits": attackers[worst]["mean_entropy_bits"],
        "min_mean_entropy_bits": min(a["mean_entropy_bits"] for a in attackers.values()),
    }


def summary_table(report: Dict[str, Any]) -> str:
    """A plain-text table of the headline numbers (for the CLI's stdout)."""
    rows = [("filter", "worst attacker", "bal.acc", "AUC", "leak bits", "fixed bal.acc", "SSIM", "PSNR", "extra")]
    clean = report.get("clean", {}).get("worst_attacker", {})
    rows.append(("(clean)", clean.get("arch", "-"), _f(clean.get("balanced_accuracy")), _f(clean.get("auc")),
                 _f(clean.get("leakage_bits")), "-", "1.000", "inf", ""))
    for r in report.get("results", []):
        p, u = r["privacy"], r["utility"]
        fixed = p.get("fixed_attackers", {})
        fixed_best = max((v["balanced_accuracy"] for v in fixed.values() if v.get("balanced_accuracy") is not None),
                         default=None)
        extra = []
        worst = p["worst_attacker"]["arch"]
        runs = [run["test_balanced_accuracy"] for run in p["attackers"].get(worst, {}).get("restarts", [])]
        if runs:   # the spread the worst attacker's kept run was drawn from (the lowest validation loss is kept)
            extra.append(f"{worst} runs {min(runs):.3f}-{max(runs):.3f}")
        seeds = p["attackers"].get(worst, {}).get("over_seeds")
        if seeds:  # its kept reading at every attacker seed (`eval merge --over-seeds`)
            extra.append(f"(kept at seeds {'/'.join(str(s['seed']) for s in seeds)}: "
                         + "/".join(f"{s['balanced_accuracy']:.3f}" for s in seeds) + ")")
        if "fidelity_to_levelled" in u:   # SSIM of what a levelling filter paints, apart from its turn
            extra.append(f"SSIM to the levelled face {u['fidelity_to_levelled']['ssim']:.3f}")
        if "pose" in u:
            extra.append(f"pose×{u['pose']['fixed_mae_ratio']:.2f}")
        if "identity" in u:
            extra.append(f"id {u['identity']['share_within_0.6']:.2f}")
            ver = u["identity"].get("verification")
            if ver:  # verification accuracy at 0.6 / AUC, filtered probe (clean probe)
                f, c = ver["filtered"], ver["clean"]
                extra.append(f"verif {_f(f['accuracy_at_threshold'], 2)}/{_f(f['auc'], 2)} "
                             f"(clean {_f(c['accuracy_at_threshold'], 2)}/{_f(c['auc'], 2)})")
        rows.append((r["filter"]["name"], p["worst_attacker"]["arch"], _f(p["worst_attacker"]["balanced_accuracy"]),
                     _f(p["worst_attacker"]["auc"]), _f(p["leakage_bits"]), _f(fixed_best),
                     _f(u["fidelity"]["ssim"]), _f(u["fidelity"]["psnr_db"], 1), " ".join(extra)))
    ch = report.get("chance", {})
    rows.append(("(chance)", "-", _f(ch.get("balanced_accuracy")), "0.500", "0.000", "-", "-", "-",
                 f"majority {_f(ch.get('majority_rate'))}"))
    floor = report.get("pose_floor")
    if floor:   # what an attacker reads from the pose alone: a pose-keeping filter cannot go below it
        rows.append(("(pose floor)", "-", _f(floor["balanced_accuracy"]), _f(floor["auc"]), "-", "-", "-", "-",
                     f"the secret read from the {floor['source']} alone"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)
    framing = report.get("data", {}).get("framing")
    if describe_framing(framing):
        table += f"\n{describe_framing(framing)}: crop {framing['crop']} of each image"
    capped = unsaturated_models(report)
    if capped:
        cap = report.get("protocol", {}).get("settings", {}).get("train", {}).get("max_epochs", "?")
        table += (f"\nnot saturated (stopped at the {cap}-epoch cap, not by early stopping; raise --max-epochs): "
                  + ", ".join(capped))
    return table


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{float(v):.{digits}f}"
