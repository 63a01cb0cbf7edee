"""``privsdk filters``: the filters bundled with this privsdk and their measured numbers.

Example::

    privsdk filters
    privsdk filters --json
"""
from __future__ import annotations

import argparse
import json

HELP = "list the bundled filters and their measured numbers"
DESCRIPTION = __doc__.split("Example::")[0].strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    from ..registry import FILTERS_DIR, filters

    infos = filters()
    if args.json:
        print(json.dumps([{"name": f.name, "kind": f.kind, "version": f.version, "secret": f.secret,
                           "utility": f.utility, "input_size": list(f.input_size), "path": str(f.path),
                           "numbers": f.numbers, "measured_on": f.measured_on} for f in infos], indent=2))
        return 0
    if not infos:
        print(f"no filters are bundled with this privsdk (looked in {FILTERS_DIR}); "
              "load any bundle with Filter('path/to/bundle') or --filter PATH")
        return 0
    for f in infos:
        h, w = f.input_size
        print(f"{f.name}  {f.version}  ({f.kind}, {w}×{h})  hides {', '.join(f.secret) or '?'}; "
              f"keeps {', '.join(f.utility) or '?'}")
        if f.description:
            print(f"    {f.description}")
        if f.measured_on:
            print(f"    measured on {f.measured_on}:")
        for key, value in f.numbers.items():
            print(f"    {key:<48} {value:.4g}" if isinstance(value, float) else f"    {key:<48} {value}")
        if not f.numbers:
            print("    (no evaluation numbers in its manifest)")
    return 0
