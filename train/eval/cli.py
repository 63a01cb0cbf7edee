"""``privsdk eval``: the one command that produces privsdk's privacy and utility numbers."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

HELP = "evaluate filters and baselines: retrained attackers, utility, bounds (JSON + PNG)"
DESCRIPTION = """\
Evaluate privacy filters with the protocol of DESIGN.md: fresh attackers (a CNN from
scratch and a linear model on pixels, trained on filtered images until validation stops
improving, and a logistic regression on pixels fit to convergence), fixed clean-trained attackers, utility (PSNR/SSIM, head pose on GENKI-4K,
identity kept and verification across people by dlib when installed), baselines at
several strengths, paper 000's bounds, and the pose floor (the secret read from the head
pose alone, which a filter that keeps the pose cannot hide). Writes OUT/report.json,
OUT/tradeoff.png and OUT/examples.png (test faces before and after each filter).

examples:
  privsdk eval --filter runs/emotion/best.pt --data smilesmiled=../shared/data/SMILEsmileD --baselines
  privsdk eval --filter path/to/emotion_bundle --data genki4k=../shared/data/GENKI4K --quick
  privsdk eval --filter blur:4 --filter pixelate:8 --data smilesmiled=../shared/data/SMILEsmileD
  # cross-set: attackers trained on SMILEsmileD's filtered images, tested on GENKI-4K's
  privsdk eval --filter F.pt --data smilesmiled=../shared/data/SMILEsmileD --test-data genki4k=../shared/data/GENKI4K
  # the attacker who averages 16 frames of a still face (the noise is fresh every frame)
  privsdk eval --filter path/to/emotion_bundle --data smilesmiled=../shared/data/SMILEsmileD --average-frames 16
  # GENKI-4K's faces re-cut as Filter frames camera faces for this bundle (its input.face_crop)
  privsdk eval --filter path/to/emotion_bundle --data genki4k=../shared/data/GENKI4K --framing runtime
  # identity verification with labelled pairs (one folder of photos per person)
  privsdk eval --filter F.pt --data smilesmiled=../shared/data/SMILEsmileD --identity-data faces_by_person/
  # grey lower-face masks on faces levelled as a levelling bundle levels them (equal terms)
  privsdk eval --filter lower_mask:0.55 --level-baselines sdk/privsdk/filters/emotion-lite-levelled --data ...
  # paper 000, Section 4 (synthetic data, known answers)
  privsdk eval synthetic --quick
  # one table and trade-off plot from runs measured separately on the same data and split
  privsdk eval merge --report runs/eval/filters --report runs/eval/baselines --out runs/eval/all
  # a shipped filter beside new runs, from the report its bundle embeds
  privsdk eval merge --report sdk/privsdk/filters/emotion --report runs/eval/baselines --out runs/eval/all
  # a figure near a target, at attacker seeds 0 and 1: each attacker's worst seed counts
  privsdk eval --filter path/to/emotion_bundle --data smilesmiled=../shared/data/SMILEsmileD --seeds 0 1
  # the same from runs made separately (`--seed N` each)
  privsdk eval merge --over-seeds --report runs/eval/seed0 --report runs/eval/seed1 --out runs/eval/seeds
  # one filter out of runs that measured it beside others (named "shipped" there, "emotion" in its bundle)
  privsdk eval merge --over-seeds --report sdk/privsdk/filters/emotion --report runs/eval/pair-seed1 \
      --rename shipped=emotion --only emotion --out runs/eval/emotion-seeds

A FILTER is a training checkpoint (.pt), a bundle (directory or .zip), or a baseline
KIND[:STRENGTH] with KIND in identity, blur, pixelate, lower_mask, full_mask, noise.
NAME=PATH names a checkpoint or bundle; names FAMILY:LABEL (e.g. aioi:0.03=runs/a/filter.pt)
are drawn as one curve, like a baseline's strengths.
"""


def _name_path(text: str) -> Tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. smilesmiled=../shared/data/SMILEsmileD), got {text!r}")
    return name, path


def _old_new(text: str) -> Tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW filter names (e.g. 'aioi:0.03=emotion 0.3.0'), "
                                         f"got {text!r}")
    return old, new


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", nargs="?", choices=("filters", "synthetic", "merge"), default="filters",
                        help="'filters' (default): evaluate filters on face data; 'synthetic': paper 000 Sec. 4; "
                             "'merge': join --report files measured on the same data into one report and plot")
    parser.add_argument("--report", action="append", default=[], type=Path, metavar="REPORT",
                        help="merge mode: a report.json (or its folder) from `privsdk eval`, or a filter bundle, folder or zip "
                             "(the report its manifest embeds) (repeatable)")
    parser.add_argument("--rename", action="append", default=[], type=_old_new, metavar="OLD=NEW",
                        help="merge mode: show filter OLD as NEW in the merged report and plot (repeatable)")
    parser.add_argument("--replace", action="store_true",
                        help="merge mode: a filter found in several reports keeps the later report's result "
                             "(a re-measurement) instead of being refused")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="merge mode: keep only filter NAME (as named after --rename) from the --report files "
                             "(repeatable); with one --report, takes those filters out of a run that measured several")
    parser.add_argument("--over-seeds", action="store_true",
                        help="merge mode: the --report files are the same filters at different attacker seeds "
                             "(`privsdk eval --seed N`); keep each attacker's worst (highest) reading over the seeds, "
                             "every seed's reading beside it")
    parser.add_argument("--filter", "-f", action="append", default=[], metavar="FILTER",
                        help="filter to evaluate (repeatable): checkpoint .pt, bundle dir/.zip, or KIND[:STRENGTH]")
    parser.add_argument("--baselines", nargs="?", const="all", default=None, metavar="KINDS",
                        help="also evaluate the baselines at several strengths ('all' or a comma list, "
                             "e.g. blur,pixelate)")
    parser.add_argument("--level-baselines", default=None, metavar="BUNDLE",
                        help="cut every face out level before each baseline, with the head levelling of this "
                             "levelling bundle (its template and limits, as Filter runs it), so that baselines "
                             "compare with a levelling filter on equal terms; names read 'levelled KIND:STRENGTH'")
    parser.add_argument("--data", type=_name_path, metavar="NAME=PATH",
                        help="data set to train and test attackers on (smilesmiled, genki4k, ...)")
    parser.add_argument("--test-data", type=_name_path, metavar="NAME=PATH",
                        help="test on this set's test split instead (cross-set evaluation)")
    parser.add_argument("--secret", default="smile", help="the secret label (default: smile)")
    parser.add_argument("--utility-label", default=None,
                        help="categorical utility label for paper 000's bounds (default: yaw tercile when present)")
    parser.add_argument("--attackers", default="cnn,linear,logistic",
                        help="attacker architectures: cnn (from scratch), linear (on the pixels, SGD, early-stopped), "
                             "logistic (on the pixels, fit to convergence, L2 picked on val) (default: all three)")
    parser.add_argument("--average-frames", type=int, default=1, metavar="K",
                        help="score each stochastic filter as an attacker sees a still face in a stream: the mean "
                             "of K filtered frames, each with fresh noise (default: 1, single frames). Deterministic "
                             "filters are unchanged. Costs K filter passes per attacker epoch")
    parser.add_argument("--framing", choices=("data", "runtime"), default="data",
                        help="data (default): score each set's own face crops; runtime: first re-cut every face as "
                             "`Filter` frames camera faces for the filters under evaluation (their input.face_crop, "
                             "against where the set's faces sit in the same Haar box, measured). GENKI-4K's crops are "
                             "looser than the bundled filters' training faces; this scores what a camera would give")
    parser.add_argument("--size", type=int, default=64, help="image size the data is loaded at (default: 64)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attackers' training (default: 0)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="run the whole evaluation once per attacker seed (OUT/seed-N each) and write OUT's report "
                             "with every attacker at its worst seed, as `eval merge --over-seeds` does; for figures "
                             "within the attackers' spread of a target (e.g. --seeds 0 1)")
    parser.add_argument("--restarts", type=int, default=None, metavar="N",
                        help="train every SGD attacker (cnn, linear) N times from different seeds and keep the run "
                             "with the lowest validation loss (default: 3; quick: 1). One run's reading depends on "
                             "where its noisy validation loss dipped")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N images per split (stratified), for faster runs")
    parser.add_argument("--held-out-attacker", action="store_true",
                        help="train the attackers on the val split (faces the filter's network and eraser were never "
                             "fit on), early-stop them on half the test split and score them on the other half; the "
                             "protocol's attackers train on the filter's own training faces, which can flatter a "
                             "fitted stage (docs/design-changes.md #22)")
    parser.add_argument("--train-share", type=float, default=None, metavar="S",
                        help="cut the train split as a filter trained with data.train_share S was cut (a stratified "
                             "share S; privsdk.train.data.hold_back): the attackers train on that share, the "
                             "filter's own training faces. val and test are unchanged")
    parser.add_argument("--held-back-attacker", action="store_true",
                        help="with --train-share: train the attackers on the rest of the train split instead, the "
                             "faces the filter's training held back (no stage was fit on them); early-stopped on "
                             "val and scored on test as the protocol's are, so the two readings differ only in "
                             "whose faces the attacker has (docs/design-changes.md #22)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="epoch cap of every model (default: 100; quick: 4); a model that reaches it is named "
                             "'not saturated' in the report")
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience (default: 6; quick: 2). The attackers' validation loss jumps "
                             "from epoch to epoch; less patience can stop one at an early dip and understate it")
    parser.add_argument("--lr-drop-patience", type=int, default=None, metavar="N",
                        help="after every N epochs without a better validation loss, return to the best weights "
                             "and halve the learning rate (default: 0, a constant rate; on SMILEsmileD a drop left the "
                             "attackers weaker, see docs/design-changes.md #11)")
    parser.add_argument("--identity", choices=("auto", "on", "off"), default="auto",
                        help="identity kept by dlib's descriptor: auto = when dlib is installed")
    parser.add_argument("--identity-faces", type=int, default=None,
                        help="faces (verification probes) used for the identity metrics (default: 200; quick: 20); more "
                             "than the test split holds takes all of it (e.g. 100000), which a figure within a few "
                             "points of a target needs: 200 faces give about ±2 points (docs/design-changes.md #19)")
    parser.add_argument("--identity-data", type=Path, default=None, metavar="PATH",
                        help="faces with identity labels (PATH/<person>/*.jpg) for verification across people "
                             "(needs dlib); default: pairs of different test photos taken as different people")
    parser.add_argument("--utility-axis", choices=("ssim", "psnr", "identity", "pose"), default="ssim",
                        help="utility axis of the trade-off plot (default: ssim)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: few epochs, small attackers, 200 images per split, fewer strengths")
    parser.add_argument("--out", type=Path, default=Path("runs/eval"), help="output directory (default: runs/eval)")


def _load(name: str, path: str, secret: Optional[str], size: int, seed: int, train_share: Optional[float] = None,
          held_back: bool = False):
    """A data set and its splits; with ``train_share`` the train split cut as the trainer cuts it, and with
    ``held_back`` the held-back remainder put in its place (the faces the attackers train on)."""
    from privsdk.errors import DependencyError

    try:
        from privsdk.train.data import config_splits, load_dataset
    except ImportError as exc:
        raise DependencyError(f"loading data sets needs privsdk.train.data ({exc}); expected the training part "
                              "of privsdk") from exc
    ds = load_dataset(name, root=path, size=size)
    if secret is None:
        return ds, None
    splits = config_splits(ds, {"secret": secret, "fractions": (0.7, 0.15, 0.15), "split_seed": seed,
                                "train_share": train_share}, secret)
    if held_back:
        splits["train"] = splits["held_back"]
    return ds, splits


def _identity_set(path: Path, size: int):
    """An ``identity-folder`` set (PATH/<person>/*.jpg) as labelled faces for verification."""
    from .verification import LabelledFaces

    ds, _ = _load("identity-folder", str(path), None, size, 0)
    return LabelledFaces(name=f"identity-folder:{path.name}", images=ds.images, identities=ds.labels["identity"],
                         info={"root": str(path)})


def _run_synthetic(args: argparse.Namespace) -> int:
    import numpy as np

    from privsdk.log import get_logger

    from .plot import plot_synthetic
    from .report import versions, write_report
    from .synthetic import SyntheticSettings, run_synthetic

    log = get_logger("eval")
    if args.quick:
        settings = SyntheticSettings(steps=400, verify_steps=400, samples=2000, verify_hidden=32, seed=args.seed)
        result = run_synthetic((float(np.log(2)),), ks=(0.0, float(np.log(2))), settings=settings, progress=True)
    else:
        result = run_synthetic(settings=SyntheticSettings(seed=args.seed), progress=True)
    result["versions"] = versions()
    path = write_report(result, args.out / "synthetic.json")
    png = plot_synthetic(result, args.out / "synthetic.png")
    for e in result["experiments"]:
        print(f"I(U;S) = {e['I_US']:.3f} nats")
        for p in e["points"]:
            print(f"  {p['filter']:9s} k={p['k']:.3f}  I(S;Y)={p['I_SY_nats']:.3f}  I(U;X|Y)={p['I_UX_given_Y_nats']:.3f}"
                  f"  Lemma 2.2 lower={p['lemma22_lower']:.3f}")
    log.info("wrote %s and %s", path, png)
    return 0


def _run_merge(args: argparse.Namespace) -> int:
    from privsdk.errors import InputError

    from .merge import merge_reports, select_filters, worst_over_seeds
    from .report import headline, read_report

    selecting = bool(args.only or args.rename)
    if len(args.report) < (1 if selecting else 2):
        raise InputError("privsdk eval merge: expected at least two --report REPORT (report.json or its folder), "
                         "or one with --only NAME / --rename OLD=NEW to take filters out of it")
    sources = [str(p) for p in args.report]
    reports = select_filters([read_report(p) for p in args.report], rename=dict(args.rename), only=args.only)
    if args.over_seeds:
        if args.replace:
            raise InputError("privsdk eval merge --over-seeds: --replace does not apply (every report holds "
                             "the same filters, each at its own seed)")
        merged = worst_over_seeds(reports, sources=sources)
    elif len(reports) == 1:
        merged = dict(reports[0], selected_from=sources[0], summary=headline(reports[0]))
    else:
        merged = merge_reports(reports, sources=sources, replace=args.replace)
    return _write_joined(merged, args)


def _write_joined(merged: dict, args: argparse.Namespace) -> int:
    """Write a joined report and its trade-off plot to OUT, and print its table."""
    from privsdk.log import get_logger

    from .plot import plot_tradeoff
    from .report import summary_table, write_report

    path = write_report(merged, args.out)
    png = plot_tradeoff(merged, args.out / "tradeoff.png", utility=args.utility_axis)
    print(summary_table(merged))
    get_logger("eval").info("wrote %s and %s", path, png)
    return 0


def _run_seeds(args: argparse.Namespace) -> int:
    """The evaluation once per attacker seed, then one report of each attacker's worst seed."""
    from privsdk.errors import InputError
    from privsdk.log import get_logger

    from .merge import worst_over_seeds
    from .report import read_report

    seeds = list(args.seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise InputError(f"privsdk eval --seeds {' '.join(map(str, seeds))}: expected two or more different "
                         "attacker seeds (one seed is --seed N)")
    if args.seed != 0:
        raise InputError(f"privsdk eval: --seed {args.seed} and --seeds {' '.join(map(str, seeds))}; expected one of "
                         "them (--seeds names every seed to run)")
    runs = []
    for seed in seeds:
        run = argparse.Namespace(**{**vars(args), "seeds": None, "seed": seed, "out": args.out / f"seed-{seed}"})
        get_logger("eval").info("attacker seed %d (%d of %d) -> %s", seed, len(runs) + 1, len(seeds), run.out)
        rc = main(run)
        if rc:
            return rc
        runs.append(run.out)
    return _write_joined(worst_over_seeds([read_report(p) for p in runs], sources=[str(p) for p in runs]), args)


def main(args: argparse.Namespace) -> int:
    from privsdk.errors import InputError
    from privsdk.log import get_logger

    if args.mode == "synthetic":
        return _run_synthetic(args)
    if args.mode == "merge":
        return _run_merge(args)
    if args.seeds is not None:
        return _run_seeds(args)

    from .filters import BASELINE_STRENGTHS, baseline_sweep, frame_mean, levelled, make_filter
    from .plot import plot_examples, plot_tradeoff
    from .protocol import EvalData, ProtocolSettings, evaluate
    from .report import summary_table, write_report
    from .training import pick_device

    log = get_logger("eval")
    if args.data is None:
        raise InputError("privsdk eval: --data NAME=PATH is required (e.g. smilesmiled=../shared/data/SMILEsmileD)")
    if not args.filter and not args.baselines:
        raise InputError("privsdk eval: nothing to evaluate; expected --filter FILTER and/or --baselines")
    if args.restarts is not None and args.restarts < 1:
        raise InputError(f"privsdk eval: --restarts {args.restarts}; expected at least 1 run per attacker")
    device = pick_device(args.device)
    log.info("Running on %s", device)
    if args.average_frames < 1:
        raise InputError(f"privsdk eval: --average-frames {args.average_frames}; expected at least 1 frame")
    filters = [make_filter(spec, device=device) for spec in args.filter]
    if args.baselines:
        kinds = list(BASELINE_STRENGTHS) if args.baselines == "all" else args.baselines.split(",")
        unknown = [k for k in kinds if k not in BASELINE_STRENGTHS]
        if unknown:
            raise InputError(f"--baselines: unknown kind(s) {unknown}; expected some of {sorted(BASELINE_STRENGTHS)}")
        filters += baseline_sweep(kinds, quick=args.quick)
    if args.level_baselines:
        if not any(f.kind == "baseline" for f in filters):
            raise InputError("--level-baselines: no baseline to level; expected --baselines or --filter KIND[:STRENGTH]")
        filters = [levelled(f, args.level_baselines) if f.kind == "baseline" else f for f in filters]
    filters = [frame_mean(f, args.average_frames) for f in filters]

    if args.held_back_attacker and args.train_share is None:
        raise InputError("privsdk eval --held-back-attacker: the faces held back depend on the share the filter was "
                         "trained on; expected --train-share S (its manifest's training.config.data.train_share)")
    if args.held_back_attacker and (args.held_out_attacker or args.limit or args.quick):
        raise InputError("privsdk eval --held-back-attacker picks the attackers' faces itself; expected it without "
                         "--held-out-attacker, --limit and --quick")
    ds, splits = _load(*args.data, args.secret, args.size, args.split_seed, args.train_share, args.held_back_attacker)
    test_ds = test_splits = None
    if args.test_data:
        test_ds, test_splits = _load(*args.test_data, args.secret, args.size, args.split_seed)
    data = EvalData.from_dataset(ds, splits, args.secret, test_ds, test_splits)
    limit = args.limit if args.limit is not None else (200 if args.quick else None)
    if limit:
        data = data.subset(limit, seed=args.split_seed)
    if args.held_out_attacker:
        data = data.held_out(seed=args.split_seed)
    if args.framing == "runtime":
        from .framing import frame_as_runtime

        data = frame_as_runtime(data, filters)
    data.info["split_seed"] = args.split_seed
    if args.train_share is not None:
        data.info["train_share"] = {"share": args.train_share, "split": "train", "attackers_trained_on":
                                    "held_back" if args.held_back_attacker else "fit share"}
    data.info["fractions"] = [0.7, 0.15, 0.15]
    # by role, not by loader name: a cross-set run may use the same loader twice (two CSV sets)
    data.info["roots"] = {"train": f"{args.data[0]}={args.data[1]}",
                          "test": f"{(args.test_data or args.data)[0]}={(args.test_data or args.data)[1]}"}

    overrides: Dict[str, Any] = {"attackers": tuple(a for a in args.attackers.split(",") if a),
                                 "seed": args.seed, "utility_label": args.utility_label,
                                 # labelled identity data asks for the identity metrics: dlib is then required
                                 "identity": {"auto": True if args.identity_data else None, "on": True,
                                              "off": False}[args.identity]}
    settings = ProtocolSettings.quick_settings(**overrides) if args.quick else ProtocolSettings(**overrides)
    settings.train.device = device
    if args.max_epochs:
        settings.train.max_epochs = args.max_epochs
    if args.patience:
        settings.train.patience = args.patience
    if args.lr_drop_patience:
        settings.train.lr_drop_patience = args.lr_drop_patience
    if args.restarts is not None:
        settings.restarts = args.restarts
    if args.identity_faces:
        settings.identity_faces = args.identity_faces
    identity_set = _identity_set(args.identity_data, args.size) if args.identity_data else None
    log.info("evaluating %d filter(s) on %s (%s)", len(filters), data.name,
             ", ".join(f"{k} {v}" for k, v in data.describe()["sizes"].items()))
    report = evaluate(filters, data, settings, identity_set=identity_set)
    path = write_report(report, args.out)
    png = plot_tradeoff(report, args.out / "tradeoff.png", utility=args.utility_axis)
    examples = plot_examples(filters, data.images["test"], args.out / "examples.png",
                             labels=data.labels["test"][data.secret])
    print(summary_table(report))
    log.info("wrote %s, %s and %s", path, png, examples)
    return 0
