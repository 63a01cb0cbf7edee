"""``privsdk export``: checkpoint → filter bundle, report → bundle, bundle → TensorRT engine."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

HELP = "export a trained checkpoint to a filter bundle (ONNX + maps), or a bundle to a TensorRT engine"
DESCRIPTION = """\
Seven uses:

  privsdk export CHECKPOINT -o DIR [--name N] [--version V] [--report R] [--fp16] [--opset N] [--simplify]
      Write the filter bundle DIR (filter.onnx, norm.npz, filter.json). Every export
      runs onnx.checker, onnxruntime vs PyTorch (fp32 within 1e-4) and the fused
      kernels end to end, and records the figures in filter.json under "export".
      A lite filter exports to norm.npz only.

  privsdk export BUNDLE --report REPORT.json
      Embed a 'privsdk eval' report into an existing bundle; the report must be
      about this bundle's files (their SHA-256), and no other file changes.

  privsdk export BUNDLE --face-crop
      Measure where the bundle's training faces sit in the runtime's Haar face box
      (reading the training data its manifest names) and write it as input.face_crop,
      so Filter frames camera faces as the filter was trained. Exporting a checkpoint
      does this by itself.

  privsdk export BUNDLE --level-head -o DIR [--name N] [--version V] [--description D]
      Write a new bundle DIR: the same filter, with every face cut out turned level
      first (registered onto the mean face of the bundle's training split, read from
      the data its manifest names) and pasted back level. The head's roll is given up
      so that it cannot give the secret away. Evaluate DIR and embed its report.

  privsdk export BUNDLE --erase-secret -o DIR [--erase-data NAME=ROOT ...] [--erase-framing {data,runtime} ...]
                 [--erase-refit] [--erase-draws K] [--name N] [--version V]
      Write a new bundle DIR: the same filter, with what is left of its secret that a
      linear model could read projected out of every face (LEACE, fit in closed form on
      the filter's outputs for the training split of the data its manifest names, the
      ridge picked on the validation split). --erase-draws K (K > 1, a stochastic filter)
      averages its outputs over K noise draws per face and keeps only ridges that leave
      the least class-mean difference on one more draw: an eraser fit on one draw leaves
      a linear trace on every later draw (emotion 0.10.0: logistic attacker 0.568 -> 0.517
      with K = 4), but measured so far the retrained CNN reads more (0.606 -> 0.691). --erase-framing runtime fits it on those
      faces re-cut as Filter cuts camera faces for this bundle (input.face_crop), which
      is what a device feeds it when a set's own crops are framed looser (GENKI-4K);
      --erase-framing data runtime fits on both, so that the secret's means meet on the
      set's own crops and on its re-cut faces (a set whose re-cut is its own crops is fit once).
      --erase-refit: BUNDLE already erases; drop its eraser (its other files must be the ones
      it was fit behind) and fit a new one, keeping BUNDLE's name and version unless given.
      Evaluate DIR and embed its report.

  privsdk export BUNDLE --grey-lower SHARE -o DIR [--name N] [--version V]
      Write a new bundle DIR: the same filter, whose post-kernel writes flat grey over
      the bottom SHARE of every face's crop (its maps post_scale / post_shift), whatever
      the network put there. Evaluate DIR and embed its report.

  privsdk export BUNDLE --residual-scale S -o DIR [--name N] [--version V]
      Write a new bundle DIR: the same residual U-Net, keeping the share S (0-1) of
      the change its network makes to each face (its last convolution scaled): 1 is
      the filter as trained, 0 the face (with its fill) alone. One point of the
      privacy-utility curve per S, without retraining. Scale before --erase-secret
      (an eraser is fit on the outputs scaling changes); evaluate DIR, embed its report.

  privsdk export BUNDLE --format engine [--fp16 | --int8 --calib DIR | --precision P] [--max-batch N] [--workspace MB]
      Build a TensorRT 10 engine for this machine's GPU into the engine cache
      ($XDG_CACHE_HOME/privsdk/engines), check it against onnxruntime and record
      the error and latency in the engine's side-file. Needs TensorRT and a GPU.

Examples:
  privsdk export runs/emotion/best.pt -o bundles/emotion --name emotion --fp16
  privsdk export bundles/emotion --report runs/emotion/eval.json
  privsdk export sdk/privsdk/filters/emotion-lite --level-head -o bundles/emotion-lite-levelled
  privsdk export sdk/privsdk/filters/emotion-lite-levelled --erase-secret -o bundles/emotion-lite-erased
  privsdk export bundles/emotion-erased --grey-lower 0.55 -o bundles/emotion-grey
  privsdk export bundles/emotion-0.7.0 --residual-scale 0.5 -o bundles/emotion-s50
  privsdk export bundles/emotion --format engine --fp16 --max-batch 16
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="CHECKPOINT|BUNDLE",
                        help="a training checkpoint (.pt), or a bundle directory/.zip for --report or --format engine")
    parser.add_argument("-o", "--output", metavar="DIR", help="bundle directory to write (checkpoint export)")
    parser.add_argument("--name", help="filter name in the manifest (default: the output directory's name)")
    parser.add_argument("--version", dest="bundle_version", default=None, metavar="V",
                        help="filter version in the manifest (default: 1.0.0; with --level-head the source's)")
    parser.add_argument("--description", default="", help="one-line description for the manifest")
    parser.add_argument("--face-crop", action="store_true",
                        help="for a bundle: measure where its training faces sit in the Haar face box (from the "
                             "training data its manifest names) and write it, so the runtime frames faces alike")
    parser.add_argument("--level-head", action="store_true",
                        help="for a bundle: write a new bundle (-o DIR) that cuts every face out level first, "
                             "registered onto its training faces' mean face")
    parser.add_argument("--erase-secret", action="store_true",
                        help="for a bundle: write a new bundle (-o DIR) whose outputs have the secret's linear trace "
                             "projected out (LEACE, fit on its training faces' outputs)")
    parser.add_argument("--erase-data", metavar="NAME=ROOT", action="append",
                        help="--erase-secret: a set of faces to fit on, repeatable: the classes' means then meet within "
                             "each set (default: the data the bundle's manifest names)")
    parser.add_argument("--erase-framing", choices=("data", "runtime"), nargs="+", metavar="{data,runtime}",
                        help="--erase-secret: fit on each set's own crops (data, the default), on its faces re-cut "
                             "as Filter cuts camera faces for this bundle (runtime: what a device feeds the eraser), "
                             "or on both (data runtime: each framing of each set its own group)")
    parser.add_argument("--erase-refit", action="store_true",
                        help="--erase-secret on a bundle that already erases: drop its eraser and fit a new one "
                             "(e.g. on other data or framings)")
    parser.add_argument("--erase-draws", type=int, metavar="K",
                        help="--erase-secret on a stochastic bundle: noise draws averaged per training face, the ridge "
                             "judged on one more (default 1: one draw, the ridge by the smallest change alone)")
    parser.add_argument("--grey-lower", type=float, metavar="SHARE",
                        help="for a bundle: write a new bundle (-o DIR) whose post-kernel writes flat grey over the "
                             "bottom SHARE of every face's crop (e.g. 0.55)")
    parser.add_argument("--residual-scale", type=float, metavar="S",
                        help="for a residual U-Net bundle: write a new bundle (-o DIR) that keeps the share S (0-1) of "
                             "the change its network, as trained, makes to each face (from a bundle already kept at "
                             "0.5, S 1 gives the whole change back)")
    parser.add_argument("--report", metavar="EVAL_REPORT.json",
                        help="embed this 'privsdk eval' report under 'evaluation' (must match the bundle's files)")
    parser.add_argument("--format", choices=("bundle", "engine"), default="bundle",
                        help="bundle: ONNX + maps (default); engine: a TensorRT engine from a bundle")
    parser.add_argument("--fp16", action="store_true",
                        help="bundle: also write filter.fp16.onnx (fp32 I/O) with its parity figure; "
                             "engine: build an FP16 engine")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset, ≥ 17 (default: %(default)s)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                        help="torch's ONNX exporter: auto = torch.export-based (dynamo), falling back to the "
                             "legacy TorchScript one if it fails (default: %(default)s)")
    parser.add_argument("--simplify", action="store_true",
                        help="simplify the graph with onnxslim/onnxsim if installed, kept only if parity holds")
    parser.add_argument("--int8", action="store_true", help="engine: INT8 with entropy calibration (needs --calib)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                        help="engine: the precision spelled out (same as no flag / --fp16 / --int8)")
    parser.add_argument("--calib", metavar="DIR", help="engine --int8: folder of real images for calibration")
    parser.add_argument("--max-batch", type=int, default=8, help="engine: largest batch of the profile (default: 8)")
    parser.add_argument("--workspace", type=int, default=1024, metavar="MB",
                        help="engine: builder workspace limit in MB (default: %(default)s)")
    parser.add_argument("--cache-dir", metavar="DIR", help="engine: cache directory (default: the user's cache)")
    parser.add_argument("--rebuild", action="store_true", help="engine: rebuild even if a valid cached engine exists")


def _is_bundle(path: Path) -> bool:
    import zipfile

    return path.is_dir() or (path.is_file() and path.suffix == ".zip" and zipfile.is_zipfile(path))


def _print(obj: Dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _write_derived(flag: str, what: str, source: Path, args: argparse.Namespace, write: Any) -> int:
    """``privsdk export BUNDLE FLAG -o DIR``: a new bundle made from ``source`` by ``write()``."""
    from privsdk.errors import InputError

    if not _is_bundle(source) or not args.output:
        raise InputError(f"{flag} takes a bundle and -o DIR, the new bundle to write "
                         f"('privsdk export BUNDLE {flag} -o DIR')")
    if args.report or args.face_crop:
        raise InputError(f"{flag} writes a new bundle with no report: evaluate it, then embed the report "
                         "with a second 'privsdk export DIR --report REPORT'")
    out = write()
    print(f"wrote {out}: {source} with {what}; evaluate it ('privsdk eval --filter {out} ...') and "
          f"embed the report ('privsdk export {out} --report REPORT')")
    return 0


def main(args: argparse.Namespace) -> int:
    from privsdk.errors import InputError

    source = Path(args.source)
    if args.format == "engine":
        from .engine import EngineRequest, build_engine

        if not _is_bundle(source):
            raise InputError(f"--format engine: {source} is not a bundle directory or .zip; export the checkpoint "
                             "first ('privsdk export CHECKPOINT -o DIR')")
        flagged = "int8" if args.int8 else "fp16" if args.fp16 else None
        if args.fp16 and args.int8 or (flagged and args.precision and flagged != args.precision):
            raise InputError("--fp16, --int8 and --precision disagree: choose one precision "
                             "(an INT8 engine keeps FP16 for the layers it does not quantize)")
        precision = args.precision or flagged or "fp32"
        record = build_engine(EngineRequest(source, precision=precision, max_batch=args.max_batch,
                                            workspace_mb=args.workspace, calib_dir=args.calib,
                                            cache_dir=args.cache_dir, rebuild=args.rebuild))
        _print(record)
        return 0
    if args.int8 or args.calib or args.precision:
        raise InputError("--int8, --calib and --precision apply to '--format engine' only")
    if args.level_head and args.erase_secret:
        raise InputError("--erase-secret and --level-head each write a new bundle: level first, then erase the "
                         "levelled bundle (the eraser is fit on what the runtime feeds the post-kernel)")
    if args.grey_lower is not None and (args.level_head or args.erase_secret):
        raise InputError("--grey-lower writes a new bundle of its own: level and erase first, then grey the result")
    if args.residual_scale is not None and (args.level_head or args.erase_secret or args.grey_lower is not None):
        raise InputError("--residual-scale writes a new bundle of its own: scale first, then erase or grey the "
                         "result (an eraser is fit on the network's outputs, which scaling changes)")
    if (args.erase_data or args.erase_framing or args.erase_refit or args.erase_draws is not None) \
            and not args.erase_secret:
        raise InputError("--erase-data, --erase-framing, --erase-refit and --erase-draws say how --erase-secret fits; "
                         "give --erase-secret too")
    if args.level_head:
        from .level_head import level_bundle

        return _write_derived("--level-head", "head levelling", source, args, lambda: level_bundle(
            source, args.output, name=args.name, version=args.bundle_version, description=args.description or None))
    if args.erase_secret:
        from .erase_secret import DRAWS, erase_bundle

        return _write_derived("--erase-secret", "a linear eraser of its secret", source, args, lambda: erase_bundle(
            source, args.output, name=args.name, version=args.bundle_version, description=args.description or None,
            data=args.erase_data, framing=args.erase_framing or ["data"], refit=args.erase_refit,
            draws=DRAWS if args.erase_draws is None else args.erase_draws))
    if args.grey_lower is not None:
        from .grey_lower import grey_lower_bundle

        return _write_derived("--grey-lower", f"the bottom {args.grey_lower:.0%} of every face grey", source, args,
                              lambda: grey_lower_bundle(source, args.output, args.grey_lower, name=args.name,
                                                        version=args.bundle_version,
                                                        description=args.description or None))
    if args.residual_scale is not None:
        from .residual_scale import residual_scale_bundle

        return _write_derived("--residual-scale", f"{args.residual_scale:.0%} of its network's change", source, args,
                              lambda: residual_scale_bundle(source, args.output, args.residual_scale, name=args.name,
                                                            version=args.bundle_version,
                                                            description=args.description or None))
    if _is_bundle(source) and args.face_crop:
        from .bundle_export import embed_face_crop

        layout = embed_face_crop(source)
        print(f"face crop layout {layout['box']} ({layout['faces_found']} of {layout['faces_tried']} training faces) "
              f"written into {source}")
        if not args.report:
            return 0
    if _is_bundle(source):
        if not args.report:
            raise InputError(f"{source} is a bundle: give --report REPORT.json to embed an evaluation, or "
                             "--format engine to build a TensorRT engine")
        from .report import embed_report, read_report

        embed_report(source, read_report(args.report), source=args.report)
        print(f"embedded {args.report} into {source}")
        return 0
    if args.face_crop:
        # A checkpoint export always writes the layout (the checkpoint's, or measured from its training data);
        # accepting the flag here would suggest it changed something.
        raise InputError("--face-crop applies to an existing bundle only: exporting a checkpoint already writes "
                         "its face crop layout (stored by the trainer, or measured from the training data it names)")
    if not args.output:
        raise InputError("exporting a checkpoint needs -o DIR, the bundle directory to write")
    from .bundle_export import ExportOptions, export_checkpoint
    from .report import read_report

    options = ExportOptions(name=args.name, version=args.bundle_version or "1.0.0", description=args.description,
                            opset=args.opset, exporter=args.exporter, fp16=args.fp16, simplify=args.simplify,
                            report=read_report(args.report) if args.report else None,
                            report_source=args.report or "<report>")
    result = export_checkpoint(source, args.output, options)
    _print({"bundle": str(result.directory), "name": result.manifest["name"], "kind": result.manifest["kind"],
            "files": result.files, "checks": result.manifest["export"]["checks"],
            "fp16": result.manifest["export"].get("fp16"), "simplify": result.manifest["export"].get("simplify")})
    return 0
