"""``python -m mls_core.vectors FILE [FILE...]``: verify official MLS test vector files.

Prints ``NAME: N passed, M failed`` per file (N + M = entries in the file) and exits 1 if
any entry failed or a file's kind is unsupported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import UnsupportedKind, run_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mls_core.vectors", description=__doc__)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    args = ap.parse_args(argv)
    ok = True
    for path in args.files:
        name = path.stem
        try:
            results = list(run_file(path))
        except UnsupportedKind as unsupported:
            print(f"{name}: unsupported: {unsupported}")
            ok = False
            continue
        failed = [(i, e) for i, e in results if e is not None]
        print(f"{name}: {len(results) - len(failed)} passed, {len(failed)} failed")
        if failed:
            ok = False
            for i, err in failed[: None if args.verbose else 3]:
                print(f"  entry {i}: {type(err).__name__}: {err}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
