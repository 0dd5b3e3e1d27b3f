"""Write each target's seed corpus to ``fuzz/.work/seeds/<target>/`` (gitignored).

The seeds are generated at run time from the official test vectors beside the repository
(``../shared/test-vectors``) and from the live world (``fuzz/world.py``), so the repository
holds no binary corpus. Usage: ``python -m fuzz.seed_corpus [TARGET ...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

from .harness import TARGETS, target

WORK = Path(__file__).resolve().parent / ".work"


def seed_dir(name: str) -> Path:
    return WORK / "seeds" / name


def write_seeds(name: str) -> int:
    """Replace ``seed_dir(name)``'s files with the target's seeds; return their count."""
    out = seed_dir(name)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    n = 0
    for seed in target(name).seeds():
        (out / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    args = parser.parse_args(argv)
    for name in args.targets:
        print(f"{name}: {write_seeds(name)} seeds in {seed_dir(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
