"""The one command line of privsdk: ``privsdk train | eval | export | run | demo | bench | filters``.

Each subcommand lives in its own module, which exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``main(args) -> int``. Those modules import their
heavy dependencies (torch, onnx, cv2) inside ``main`` only, so ``privsdk --help``
stays fast and works on a device without torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from . import __version__
from .errors import PrivsdkError
from .log import configure, get_logger
from .torch_memory import prepare_torch_cpu_memory

SUBCOMMANDS = {
    "demo": "privsdk.commands.demo",
    "run": "privsdk.commands.run",
    "filters": "privsdk.commands.filters",
    "train": "privsdk.train.cli",
    "distill-identity": "privsdk.train.distill_cli",
    "eval": "privsdk.train.eval.cli",
    "export": "privsdk.export.cli",
    "bench": "privsdk.bench.cli",
}

#: commands that train torch models on the CPU, and keep their memory mapped between steps; never the runtime
TORCH_TRAINING_COMMANDS = frozenset({"train", "distill-identity", "eval", "export"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privsdk",
        description="On-device privacy filters for camera frames.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'privsdk COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"privsdk {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # A part whose module cannot be imported is still listed, with the reason.
            p = sub.add_parser(name, help=f"(unavailable: {exc})")
            p.set_defaults(_unavailable=str(exc))
            continue
        p = sub.add_parser(name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in TORCH_TRAINING_COMMANDS:
        # before the command imports torch, whose CPU allocator reads its setting once (privsdk.torch_memory)
        prepare_torch_cpu_memory()
    configure(-1 if args.quiet else args.verbose)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", None):
        print(f"privsdk {args.command}: unavailable: {args._unavailable}", file=sys.stderr)
        return 2
    try:
        return int(args._main(args) or 0)
    except PrivsdkError as exc:
        get_logger("cli").error("%s", exc)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
