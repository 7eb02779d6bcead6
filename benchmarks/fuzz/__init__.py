"""Fuzz targets of the untrusted-input parsers (frame decoder, C12880 and AS7265x adapters, command parser, bundle
reader) and ``spectro-bench fuzz``, the dedicated long run of each under Hypothesis.

Why Hypothesis rather than atheris: Hypothesis is already a test dependency, runs on every platform CI uses, and
its structured strategies (valid frames with a few bytes flipped, signed commands with one field changed, real
bundles with one byte changed) reach the deep checks far more often than byte-level mutation of random input
would; atheris needs a clang-built CPython extension that the target devices do not have.

Each target is a :class:`FuzzTarget`: a Hypothesis strategy factory, a check function that feeds one example to
the parser and asserts the parser's documented contract (which exceptions may escape, what the counters say), and
the tuple of exception types the package promises (anything else is a bug). ``tests/reliability/test_fuzz.py``
runs the same targets with a small example count in CI; this package runs them with ``--examples 100000``.
Heavy imports (hypothesis, the packages under test) happen inside functions so that ``spectro-bench`` stays fast
to start.

The package: :mod:`~benchmarks.fuzz.target` (what a target is, the bounds, the byte mutation helper),
:mod:`~benchmarks.fuzz.frames` (decoder, adapters), :mod:`~benchmarks.fuzz.commands`,
:mod:`~benchmarks.fuzz.bundle`, and :mod:`~benchmarks.fuzz.runner` (the table of targets and the CLI, re-exported
here for ``spectro-bench``).
"""

from __future__ import annotations

from benchmarks.fuzz.runner import TARGETS, add_arguments, examples_from_env, guarded, run, run_target
from benchmarks.fuzz.target import FuzzTarget

__all__ = ["TARGETS", "FuzzTarget", "add_arguments", "examples_from_env", "guarded", "run", "run_target"]
