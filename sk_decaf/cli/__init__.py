"""The ``sk-decaf`` command line: ``demo``, ``extract`` and ``evaluate``."""

import argparse
import sys

from ._demo import add_demo_parser
from ._extract import add_extract_parser

__all__ = ["main", "build_parser"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sk-decaf",
        description="DeCAF features (activations of frozen ImageNet CNNs) with scikit-learn.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_demo_parser(sub)
    add_extract_parser(sub)
    try:
        from ._evaluate import add_evaluate_parser
    except ImportError:  # pragma: no cover - evaluation extras missing
        pass
    else:
        add_evaluate_parser(sub)
    return parser


def main(argv=None):
    """Entry point of the ``sk-decaf`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"sk-decaf {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
