"""``python -m mimi_content check FILE.cbor...`` (see :mod:`mimi_content.check`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .check import check_files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimi_content",
                                     description="MIMI content (draft-ietf-mimi-content)")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="decode, validate and re-encode .cbor files")
    check.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    return check_files(args.files, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
