"""The trade-off plot of ``privsdk eval`` (PNG, matplotlib, no display needed).

Left: privacy (the worst retrained attacker's balanced accuracy; lower is more
private) against utility (SSIM by default; pose-MAE ratio or identity kept when
measured); each baseline kind is a curve over its strengths, evaluated filters
are stars; chance, the clean attacker and the pose floor (the secret read from
the pose alone, when measured) are marked. Right (when the report has
bounds): paper 000's plane, I(S; Y) against I(U; X | Y) in nats, with Lemma 2.2
(lower) and Lemma 2.3 (achievable) and each filter's empirical point.
``plot_examples`` draws test faces before and after each filter (``examples.png``).

Example::

    from privsdk.train.eval.plot import plot_tradeoff
    plot_tradeoff(report, "runs/eval/tradeoff.png")
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from privsdk.errors import InputError

from .framing import describe_framing

UTILITY_AXES = {
    "ssim": ("SSIM vs original (higher keeps more)", lambda u: u["fidelity"]["ssim"]),
    "psnr": ("PSNR vs original, dB", lambda u: u["fidelity"]["psnr_db"]),
    "identity": ("identity kept (dlib, share within 0.6)", lambda u: u["identity"]["share_within_0.6"]),
    "pose": ("clean/filtered pose MAE ratio (1 = kept)",
             lambda u: 1.0 / max(u["pose"]["fixed_mae_ratio"], 1e-9)),
}


def _utility_value(result: Dict[str, Any], axis: str) -> Optional[float]:
    try:
        return float(UTILITY_AXES[axis][1](result["utility"]))
    except (KeyError, TypeError):
        return None


def privacy_axis_label(results: List[Dict[str, Any]]) -> str:
    """The x axis: the worst retrained attacker, and over which attacker seeds when every point is such a worst."""
    seeds = [sorted({s["seed"] for a in r["privacy"]["attackers"].values() for s in a.get("over_seeds", [])})
             for r in results]
    over = f"\neach point the worst over attacker seeds {'/'.join(map(str, seeds[0]))}" if seeds and seeds[0] and all(
        s == seeds[0] for s in seeds) else ""
    return f"privacy: worst retrained attacker, balanced accuracy (lower is better){over}"


def _budget(label: str) -> Optional[float]:
    """The number a curve point's label starts with (its budget or strength: "0.5", "0.5 (0.10.0)"), if any."""
    m = re.match(r"\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)", label)
    return float(m.group(1)) if m else None


def curve_order(points: Sequence[Tuple[float, float, str]]):
    """The sort key that joins a curve's points: by budget when every label is one, else by privacy.

    A curve over a budget (the share of a network's change kept, a mask's share) is drawn in the budget's
    order, so that its line shows what each step of the budget does, even where privacy goes back and forth
    within the attackers' spread; points without a numeric label are joined left to right."""
    if points and all(_budget(lab) is not None for _, _, lab in points):
        return lambda p: (_budget(p[2]), p[0])
    return lambda p: p[0]


def plot_tradeoff(report: Dict[str, Any], path: Union[str, Path], utility: str = "ssim") -> Path:
    """Draw the report's trade-off plot into ``path`` (PNG)."""
    if utility not in UTILITY_AXES:
        raise InputError(f"utility axis {utility!r}: expected one of {sorted(UTILITY_AXES)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report.get("results", [])
    has_bounds = "bounds" in report and any("tradeoff_nats" in r for r in results)
    # a merged report's many curves get their legend beside the plot, where it hides no point
    many = len({r["filter"]["name"].partition(":")[0] for r in results}) > 8
    width = (12 if has_bounds else 6.5) + (2.5 if many else 0.0)
    fig, axes = plt.subplots(1, 2 if has_bounds else 1, figsize=(width, 5), squeeze=False)
    ax = axes[0][0]
    curves: Dict[str, List[Tuple[float, float, str]]] = defaultdict(list)
    for r in results:
        y = _utility_value(r, utility)
        if y is None:
            continue
        x = r["privacy"]["worst_attacker"]["balanced_accuracy"]
        f = r["filter"]
        # "FAMILY:LABEL" names one point of a curve: baselines over strength, filters over a budget
        key, _, label = f["name"].partition(":")
        curves[key].append((x, y, label if f.get("strength") is None else f"{f['strength']:g}"))
    # one colour per curve: matplotlib's default cycle repeats after 10, and merged reports hold more.
    # tab20 pairs a dark and a light shade of each hue; the dark ten come first so neighbours differ in hue
    palette = plt.get_cmap("tab20")

    def colour(i: int):
        return palette((2 * i) % 20 + ((2 * i) // 20) % 2)

    for i, (key, pts) in enumerate(curves.items()):
        pts.sort(key=curve_order(pts))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        is_filter = all(r["filter"]["kind"] != "baseline" for r in results if r["filter"]["name"].split(":")[0] == key)
        ax.plot(xs, ys, marker="*" if is_filter else "o", markersize=12 if is_filter else 5,
                linestyle="-" if len(pts) > 1 else "none", label=key, color=colour(i))
        for x, y, lab in pts:
            if lab:
                # in the curve's colour: where curves cross, a label says which point it names
                ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points", color=colour(i))
    chance = report.get("chance", {}).get("balanced_accuracy", 0.5)
    ax.axvline(chance, color="grey", linestyle="--", label=f"chance ({chance:.2f})")
    clean = report.get("clean", {}).get("worst_attacker", {}).get("balanced_accuracy")
    if clean is not None:
        ax.axvline(clean, color="black", linestyle=":", label=f"clean attacker ({clean:.2f})")
    floor = report.get("pose_floor")
    if floor:   # a filter that keeps the pose keeps at least this much of the secret
        ax.axvline(floor["balanced_accuracy"], color="tab:brown", linestyle="-.",
                   label=f"pose floor: {floor['source']} alone ({floor['balanced_accuracy']:.2f})")
    ax.set_xlabel(privacy_axis_label(results))
    ax.set_ylabel(UTILITY_AXES[utility][0])
    data = report.get("data", {})
    framing = describe_framing(data.get("framing"))
    ax.set_title(f"{data.get('name', '')}: secret '{data.get('secret', '')}'" + (f"\n({framing})" if framing else ""))
    ax.grid(alpha=0.3)
    if many:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        ax.legend(fontsize=7, loc="best")
    if has_bounds:
        b = report["bounds"]
        bx = axes[0][1]
        bx.plot(b["k"], b["lower"], "k-", label="Lemma 2.2 lower bound")
        bx.plot(b["k"], b["achievable"], "k--", label="Lemma 2.3 achievable")
        for r in results:
            t = r.get("tradeoff_nats", {})
            if "I_UX_given_Y_upper_nats" in t:
                bx.plot(t["I_SY_lower_nats"], t["I_UX_given_Y_upper_nats"], "o", markersize=5)
                bx.annotate(r["filter"]["name"], (t["I_SY_lower_nats"], t["I_UX_given_Y_upper_nats"]), fontsize=6)
        bx.set_xlabel("I(S; Y) nats (attacker lower estimate)")
        bx.set_ylabel(f"I(U; X | Y) nats, U = {b.get('utility_label')} (upper estimate)")
        bx.set_title("paper 000 bounds")
        bx.grid(alpha=0.3)
        bx.legend(fontsize=7)
    return _save(fig, path)


def plot_synthetic(result: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Paper 000 Figure 4: per I(U; S), the empirical (I(S; Y), I(U; X | Y)) points and the bounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exps = result["experiments"]
    fig, axes = plt.subplots(1, len(exps), figsize=(4.5 * len(exps), 4), squeeze=False)
    for ax, e in zip(axes[0], exps):
        b = e["bounds"]
        ax.plot(b["k"], b["lower"], "k-", label="Lemma 2.2")
        ax.plot(b["k"], b["achievable"], "k--", label="Lemma 2.3")
        for kind in sorted({p["filter"] for p in e["points"]}):
            pts = sorted((p["I_SY_nats"], p["I_UX_given_Y_nats"]) for p in e["points"] if p["filter"] == kind)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{kind} filter")
        ax.set_title(f"I(U;S) = {e['I_US']:.2f} nats")
        ax.set_xlabel("I(S; Y) nats")
        ax.set_ylabel("I(U; X | Y) nats")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: Any, path: Union[str, Path]) -> Path:
    """Lay out, write as PNG (creating the folder) and close ``fig``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_examples(filters: Sequence[Any], images: np.ndarray, path: Union[str, Path],
                  labels: Optional[np.ndarray] = None, count: int = 8) -> Path:
    """A grid of test faces: the originals in the top row, one row per filter below (PNG).

    ``filters`` are callables on uint8 N×H×W×3 RGB batches with a ``name`` (``FilterUnderEval``);
    with binary ``labels`` (the secret) the columns alternate between the two classes, so
    the reader sees what the filter does to a smile and to a neutral face.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise InputError(f"examples: images are {images.dtype}{images.shape}; expected uint8 N×H×W×3 with N >= 1")
    pick = np.arange(min(count, len(images)))
    if labels is not None and len(np.unique(labels)) == 2:
        classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        pick = np.array([c[i] for i in range(count) for c in classes if i < len(c)][:count])
    faces = images[pick]
    rows = [("original", faces)] + [(getattr(f, "name", f"filter {i}"), f(faces)) for i, f in enumerate(filters)]
    fig, axes = plt.subplots(len(rows), len(pick), figsize=(1.2 * len(pick) + 1.6, 1.25 * len(rows)),
                             squeeze=False)
    for r, (name, batch) in enumerate(rows):
        for c in range(len(pick)):
            ax = axes[r][c]
            ax.imshow(batch[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and labels is not None:
                ax.set_title(f"secret={int(labels[pick[c]])}", fontsize=7)
    return _save(fig, path)
