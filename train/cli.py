"""``privsdk train``: learn a privacy filter from a config file.

Examples::

    privsdk train --config configs/emotion-aioi.yaml --out runs/emotion-aioi
    privsdk train --config configs/smoke.yaml --set train.epochs=1 --set filter.kind=lite
    privsdk train --config configs/emotion-aioi.yaml --out runs/emotion-aioi --resume
    torchrun --nproc_per_node 4 -m privsdk.cli train --config configs/emotion-aioi.yaml
"""
from __future__ import annotations

import argparse

HELP = "train a privacy filter (papers 000-004 methods) from a YAML config"
DESCRIPTION = """Train a filter that hides a secret attribute while keeping utility.

The config (YAML, see configs/) has sections data, filter, method, losses and
train; --set KEY.PATH=VALUE overrides any value (parsed as YAML). The run
directory receives config.yaml, splits.json, log.csv, curves.png, the frozen
clean models, last.pt (resumable) and filter.pt (for `privsdk export`).

Methods (method.name): aioi, labelflip, maxent, filtergen, advrec.

examples:
  privsdk train --config configs/smoke.yaml --out runs/smoke
  privsdk train --config configs/emotion-aioi.yaml --set method.params.k=0.05 --set train.epochs=30
  privsdk train --config configs/emotion-aioi.yaml --out runs/emotion-aioi --resume
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.lr=1e-3 (repeatable)")
    parser.add_argument("--out", "-o", metavar="RUN_DIR",
                        help="run directory (default: runs/<config name>-<method>)")
    parser.add_argument("--method", choices=["aioi", "labelflip", "maxent", "filtergen", "advrec"],
                        help="shortcut for --set method.name=...")
    parser.add_argument("--data", metavar="PATH", help="shortcut for --set data.root=PATH")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in RUN_DIR from its last.pt (with RUN_DIR/config.yaml unless --config)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from .config import load_config

    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"method.name={args.method}")
    if args.data:
        overrides.append(f"data.root={args.data}")
    config_path = args.config
    if args.resume and config_path is None and args.out and (Path(args.out) / "config.yaml").is_file():
        config_path = str(Path(args.out) / "config.yaml")  # resume with the run's own config
    cfg = load_config(config_path, overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    out = Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem if args.config else 'default'}-{cfg.method.name}"
    from .trainer import Trainer

    import os

    final = Trainer(cfg, out, resume=args.resume).run()
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"filter checkpoint: {final}")
    return 0
