"""Run one fuzz target under atheris (coverage-guided libFuzzer), or replay inputs.

    python -m fuzz.run TARGET [--seconds 60] [--runs N] [-- LIBFUZZER_FLAG ...]
    python -m fuzz.run TARGET --reproduce FILE [FILE ...]

Seeds are (re)written to ``fuzz/.work/seeds/TARGET``; new coverage goes to
``fuzz/.work/corpus/TARGET`` and crashing inputs to ``fuzz/.work/artifacts/TARGET/``.
The exit status is non-zero if an input crashed (see docs/fuzzing.md). mls_core is
imported under atheris' instrumentation, so nothing may import it before :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

WORK = Path(__file__).resolve().parent / ".work"
TARGETS = ("decoders", "join", "join_external", "process_public", "process_private")


def _reproduce(name: str, files: list[str]) -> int:
    from .harness import target

    module = target(name)
    failed = 0
    for f in files:
        try:
            outcome = module.run_one(Path(f).read_bytes())
            print(f"{f}: {outcome.value}")
        except Exception:
            failed += 1
            print(f"{f}: CRASH")
            traceback.print_exc()
    return 1 if failed else 0


def _instrument_generated_codecs(atheris: Any, codec: Any) -> None:
    """mls_core.codec compiles each struct's decoder and encoder from generated source
    (``_Source.build``) on first use: instrument those functions too, or the fuzzer
    would see no coverage inside the structs it mutates."""
    build = codec._Source.build

    def instrumented(self: Any, fn: str, origin: str) -> Any:
        return atheris.instrument_func(build(self, fn, origin))

    codec._Source.build = instrumented


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run an mls_core fuzz target")
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seconds", type=int, default=60, help="libFuzzer -max_total_time")
    parser.add_argument("--runs", type=int, default=-1, help="libFuzzer -runs (-1: no limit)")
    parser.add_argument("--reproduce", nargs="+", metavar="FILE",
                        help="run these inputs once, uninstrumented, and print tracebacks")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags, after --")
    args = parser.parse_args(argv)
    if args.reproduce:
        return _reproduce(args.target, args.reproduce)

    import atheris  # the 'fuzz' extra: pip install -e '.[fuzz]'

    with atheris.instrument_imports(include=["mls_core"]):
        from mls_core import codec

        _instrument_generated_codecs(atheris, codec)
        from .harness import target
        module = target(args.target)
    from .seed_corpus import seed_dir, write_seeds

    n = write_seeds(args.target)
    corpus = WORK / "corpus" / args.target
    artifacts = WORK / "artifacts" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    print(f"fuzz {args.target}: {n} seeds, corpus {corpus}, artefacts {artifacts}",
          flush=True)
    flags = [
        f"-max_total_time={args.seconds}", f"-runs={args.runs}",
        f"-artifact_prefix={artifacts}/", "-print_final_stats=1", "-timeout=60",
        "-rss_limit_mb=4096", "-max_len=65536", *args.libfuzzer,
    ]
    atheris.Setup([sys.argv[0], *flags, str(corpus), str(seed_dir(args.target))],
                  module.TestOneInput)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
