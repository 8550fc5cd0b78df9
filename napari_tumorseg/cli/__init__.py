"""``tumorseg`` command line: one sub-module per sub-command, each a thin driver of the core.

Each sub-module defines ``register(subparsers)`` which adds its parser and sets
``func`` to a callable taking the parsed args and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from napari_tumorseg.errors import TumorSegError

# Order is the order shown in --help.
SUBCOMMAND_MODULES = [
    "info",
    "convert",
    "coco",
    "models",
    "train",
    "predict",
    "evaluate",
    "view",
]


def build_parser() -> argparse.ArgumentParser:
    from napari_tumorseg.cli._args import OneLineParser

    parser = OneLineParser(
        prog="tumorseg", description="Brain-tumour MRI segmentation tools (napari-tumorseg)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"napari_tumorseg.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def one_line(message, category, filename, lineno, file=None, line=None):
        # Readers warn (a slice gap, a file left out): one line each, without Python's source echo.
        text = " ".join(str(message).split())
        print(f"tumorseg {args.command}: warning: {text}", file=sys.stderr)

    shown = warnings.showwarning
    warnings.showwarning = one_line
    try:
        code = args.func(args)
    except TumorSegError as err:
        print(f"tumorseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tumorseg {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
