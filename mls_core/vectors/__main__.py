"""``python -m mls_core.vectors FILE [FILE...]``: verify official MLS test vector files.

Prints ``NAME: N passed, M failed[, K not reproducible]`` per file (N + M + K = entries in
the file), then each entry the installed libraries cannot reproduce and each part of a
passed entry that could not be checked, with the reason; exits 1 if any entry failed or a
file's kind is unsupported. Not-reproducible entries are never counted as passed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import NotReproducible, UnsupportedKind, load, parts_not_reproduced, run_file


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
        skipped = [(i, e) for i, e in results if isinstance(e, NotReproducible)]
        failed = [(i, e) for i, e in results
                  if e is not None and not isinstance(e, NotReproducible)]
        passed = len(results) - len(failed) - len(skipped)
        line = f"{name}: {passed} passed, {len(failed)} failed"
        print(line + (f", {len(skipped)} not reproducible" if skipped else ""))
        for index, reason in skipped:
            print(f"  entry {index} not reproducible: {reason}")
        not_passed = {index for index, _ in skipped} | {index for index, _ in failed}
        for index, entry in enumerate(load(path)):
            if index not in not_passed:
                for part in parts_not_reproduced(path, entry):
                    print(f"  entry {index} passed; not reproduced: {part}")
        if failed:
            ok = False
            for i, err in failed[: None if args.verbose else 3]:
                print(f"  entry {i}: {type(err).__name__}: {err}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
