"""``privsdk bench``: the benchmarks (never part of CI's pass/fail).

* ``privsdk bench kernel``   — the fused C++ pre/post kernels against numpy,
  OpenCV's blobFromImage and a plain copy (:mod:`privsdk.bench.kernel`).
* ``privsdk bench pipeline`` — the whole filter path (:mod:`privsdk.bench.pipeline`).
* ``privsdk bench filters``  — per-face cost of the bundled filters (:mod:`privsdk.bench.filters`).
* ``privsdk bench attacker`` — one training step of the evaluation's CNN attacker, under torch's
  memory defaults and privsdk's (:mod:`privsdk.bench.attacker`).

Example::

    privsdk bench kernel --repeat 20 --out bench/results/kernel.json
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict

HELP = "benchmark the fused kernel or the whole pipeline"
DESCRIPTION = __doc__.split("Example::")[0].strip() if __doc__ else HELP

#: benchmark name -> module exposing add_arguments(parser) and main(args) -> int
TARGETS: Dict[str, str] = {
    "kernel": "privsdk.bench.kernel",
    "pipeline": "privsdk.bench.pipeline",
    "filters": "privsdk.bench.filters",
    "attacker": "privsdk.bench.attacker",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-choice per benchmark; a benchmark whose module is missing is listed as unavailable."""
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    sub.required = True
    for name, module_name in TARGETS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            p = sub.add_parser(name, help=f"(unavailable: {module_name} cannot be imported: {exc})")
            p.set_defaults(_bench_unavailable=f"{module_name} cannot be imported ({exc})")
            continue
        doc = (module.__doc__ or "").split("Example::")[0].strip()
        p = sub.add_parser(name, help=getattr(module, "HELP", doc.splitlines()[0] if doc else name),
                           description=doc or None, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_bench_main=module.main)


def main(args: argparse.Namespace) -> int:
    """Run the chosen benchmark."""
    missing = getattr(args, "_bench_unavailable", None)
    if missing:
        print(f"privsdk bench {args.bench}: this benchmark is not available: {missing}", file=sys.stderr)
        return 2
    return int(args._bench_main(args) or 0)
