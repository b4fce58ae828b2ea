"""The ``sk-decaf`` command line (also ``python -m sk_decaf``): ``demo``, ``extract`` and ``evaluate``."""

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ._demo import add_demo_parser
from ._extract import add_extract_parser
from ._predict import add_predict_parser
from ._train import add_train_parser

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sk-decaf``, with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="sk-decaf",
        description="DeCAF features (activations of frozen ImageNet CNNs) with scikit-learn.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_demo_parser(sub)
    add_extract_parser(sub)
    add_train_parser(sub)
    add_predict_parser(sub)
    try:
        from ._evaluate import add_evaluate_parser
    except ImportError:  # pragma: no cover - evaluation extras missing
        pass
    else:
        add_evaluate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sk-decaf`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    # One line on stderr and a non-zero status, no traceback: bad images and cache files (ValueError),
    # files that cannot be read or written, an unreachable scheduler (OSError), missing extras.
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        print(f"sk-decaf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sk-decaf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
