"""``privsdk distill-identity``: distill dlib's face descriptor into a differentiable network.

Examples::

    privsdk distill-identity --data smilesmiled=../shared/data/SMILEsmileD --faces 3000 --epochs 15 --out runs/identity
    privsdk train --config configs/emotion-aioi.yaml \\
        --set losses.identity_model=runs/identity/descriptor.pt --set losses.identity_weight=1
"""
from __future__ import annotations

import argparse

HELP = "distill dlib's face descriptor into a small differentiable network (for losses.identity_model)"
DESCRIPTION = """Train a small CNN to predict dlib's 128-D face descriptor (same scale: the 0.6
same-person threshold keeps its meaning), so a filter can be trained to keep
identity (DESIGN.md "Keeping utility while training"; dlib has no gradients).

Faces come from the TRAIN split of the same stratified split `privsdk train`
makes (held-out faces from its VAL split). Each face also gets one seeded
filter-like perturbed copy (noise, blur, brightness, grey) with its own dlib
descriptor. dlib runs on the CPU (~0.15 s per face per worker); its results are
cached in OUT/dlib_cache.npz, so a rerun with the same faces skips them.

Writes OUT/descriptor.pt (TorchScript, for --set losses.identity_model=...),
OUT/descriptor.json (held-out metrics: mean |student - dlib|, agreement of the
within-0.6 decisions on (clean, perturbed) and (clean i, clean j) pairs) and
OUT/dlib_cache.npz. Needs dlib: pip install 'privsdk[eval]'.

examples:
  privsdk distill-identity --data smilesmiled=../shared/data/SMILEsmileD --faces 3000 --epochs 15 --out runs/identity
  privsdk distill-identity --faces 500 --epochs 3 --workers 2 --out /tmp/identity-small
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="NAME=PATH", default="smilesmiled=../shared/data/SMILEsmileD",
                        help="data set name and root (names as in data.name of a training config; "
                             "default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="face size in pixels (default: %(default)s)")
    parser.add_argument("--stratify", default="smile", metavar="LABEL",
                        help="label the split is stratified on, as data.secret of the training config; "
                             "'none' for no stratification (default: %(default)s)")
    parser.add_argument("--split-seed", type=int, default=0, help="data.split_seed of the trainer (default: %(default)s)")
    parser.add_argument("--faces", type=int, default=3000, help="training faces (TRAIN split; default: %(default)s)")
    parser.add_argument("--held-out", type=int, default=300, help="held-out faces (VAL split; default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=15, help="student training epochs (default: %(default)s)")
    parser.add_argument("--width", type=int, default=16,
                        help="SmallResNet width (stages width, 2·width, 4·width; default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate, cosine decay (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="dlib worker processes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="face choice, perturbations and training (default: %(default)s)")
    parser.add_argument("--cache-dir", metavar="DIR", help="decoded data-set cache (default: ~/.cache/privsdk/datasets)")
    parser.add_argument("--out", "-o", metavar="DIR", default="runs/identity", help="output folder (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    from privsdk.errors import InputError

    from .eval.identity import DlibDescriptor

    name, sep, root = args.data.partition("=")
    if not sep or not name or not root:
        raise InputError(f"--data {args.data!r}; expected NAME=PATH, e.g. smilesmiled=../shared/data/SMILEsmileD")
    for opt in ("faces", "held_out", "epochs", "width", "batch_size", "workers"):
        if getattr(args, opt) < 1:
            raise InputError(f"--{opt.replace('_', '-')} {getattr(args, opt)}; expected a positive integer")
    DlibDescriptor._load()  # DependencyError (pip install 'privsdk[eval]') before any data is read

    from .data import default_cache_dir, load_dataset, make_splits
    from .identity_distill import DESCRIPTOR_FILE, REPORT_FILE, distill_identity

    ds = load_dataset(name, root, args.size, cache_dir=args.cache_dir or default_cache_dir())
    stratify = None if args.stratify.lower() == "none" else args.stratify
    if stratify is not None and stratify not in ds.labels:
        raise InputError(f"--stratify {stratify!r} is not a label of {name!r}; expected one of "
                         f"{sorted(ds.labels)} or 'none'")
    fractions = (0.7, 0.15, 0.15)  # the trainer's default data.fractions
    splits = make_splits(ds, stratify=stratify, fractions=fractions, seed=args.split_seed)
    report = distill_identity(ds, splits, args.out, faces=args.faces, held_out=args.held_out, epochs=args.epochs,
                              width=args.width, batch_size=args.batch_size, lr=args.lr, workers=args.workers,
                              seed=args.seed, split_info={"stratify": stratify, "fractions": list(fractions),
                                                          "seed": args.split_seed, "root": str(root)})
    h = report["held_out"]
    print(f"held-out faces: {h['n_faces']}   mean |student - dlib|: clean {h['student_vs_dlib']['clean_mean']:.3f}, "
          f"perturbed {h['student_vs_dlib']['perturbed_mean']:.3f} "
          f"(mean-descriptor baseline {report['baselines']['mean_descriptor_distance']:.3f})")
    print(f"within-0.6 agreement: (clean, perturbed) {h['clean_vs_perturbed']['agreement']:.3f}, "
          f"(clean i, clean j) {h['clean_vs_clean']['agreement']:.3f}")
    print(f"descriptor: {args.out}/{DESCRIPTOR_FILE}   metrics: {args.out}/{REPORT_FILE}")
    return 0
