"""``tumorseg`` command line: one sub-module per sub-command, each a thin driver of the core.

Each sub-module defines ``register(subparsers)`` which adds its parser and sets
``func`` to a callable taking the parsed args and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from napari_tumorseg.errors import TumorSegError, first_line

# Order is the order shown in --help.
SUBCOMMAND_MODULES = [
    "info",
    "convert",
    "coco",
    "models",
    "train",
    "predict",
    "evaluate",
    "evaluate_clicks",
    "measure",
    "edit",
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
        text = " ".join(str(err).split())  # one line, whatever a message carried
        print(f"tumorseg {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tumorseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a bug: one masked line, the traceback on request
        if os.environ.get("TUMORSEG_DEBUG"):
            raise
        # A library's text may quote a header value (a name, a UID, a date): first_line masks them.
        print(f"tumorseg {args.command}: internal error: {type(err).__name__}: {first_line(err)} "
              "(set TUMORSEG_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = shown
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
