"""The project's tests, in tiers.

The default (fast) tier checks models, losses, data, tokenizer, report and command-line errors in
one process, in about a minute. A test leaves it through a pytest mark on its class (or module, or
method), named in SLOW_TIERS and registered in pyproject.toml:

    slow      subprocesses, DDP processes, torchrun, kills and crashes, real-data epochs, the quick start
    slurm     a real one-node SLURM cluster (tests/conftest.py starts it; needs root)
    notebook  notebooks/main.ipynb in a Jupyter kernel, the course's own notebook code (tests/data/)
    cuda_dry  the kit's CUDA path on fake CUDA tensors for T4, A100 and H100 (tests/cuda_dry/harness.py)

    python -m unittest                  the fast tier (load_tests below drops the marked tests)
    python -m pytest -q tests           the fast tier (tests/conftest.py drops them)
    python -m pytest -q -m slow tests   one tier; -m "slow or slurm or notebook or cuda_dry" every slow tier

A test named explicitly runs whatever its tier (`python -m pytest tests/test_distributed.py`,
`python -m unittest tests.test_distributed`). Helpers: tests/fixtures.py, tests/report_fixtures.py.
The fast tier needs only requirements.txt: without pytest (requirements-dev.txt) a stand-in `pytest`
module carries the marks, so the test files load and the tiers still apply.
"""
import os
import sys
import types
import unittest

SLOW_TIERS = ("slow", "slurm", "notebook", "cuda_dry")  # marks that take a test out of the default tier


class _Mark:
    """pytest.mark.<name> where pytest is not installed: records the name where pytest would."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:  # @mark.slow on a class or function
            args[0].pytestmark = [*vars(args[0]).get("pytestmark", []), self]
            return args[0]
        return self  # mark.usefixtures("name"): only the mark's name matters to the tiers


class _MarkGenerator:
    def __getattr__(self, name):
        return _Mark(name)


try:
    import pytest  # noqa: F401
except ImportError:
    sys.modules["pytest"] = types.ModuleType("pytest", "the marks only (tests/__init__.py)")
    sys.modules["pytest"].mark = _MarkGenerator()


def _mark_names(obj):
    """Names of the pytest marks set on a class, module or function (`pytestmark`, one or a list)."""
    marks = getattr(obj, "pytestmark", [])
    return {mark.name for mark in (marks if isinstance(marks, list) else [marks])}


def tiers_of(test):
    """The slow tiers a unittest test case belongs to, from the marks of its method, class and module."""
    cls = type(test)
    names = _mark_names(getattr(test, getattr(test, "_testMethodName", ""), None))
    names |= _mark_names(cls) | _mark_names(sys.modules.get(cls.__module__))
    return names & set(SLOW_TIERS)


def fast_tier(suite):
    """The suite without the tests of any slow tier (failed imports are kept: they must show)."""
    kept = unittest.TestSuite()
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            test = fast_tier(test)
            if test.countTestCases():
                kept.addTest(test)
        elif not tiers_of(test):
            kept.addTest(test)
    return kept


def load_tests(loader, standard_tests, pattern):
    """unittest's hook when it discovers this package (`python -m unittest` from the project root):
    the fast tier of every tests/test_*.py."""
    import torch

    # The tests' models are tiny: one thread computes them as fast as two, and OpenMP's spinning
    # threads slow them 10-20x when the other core is busy (tests/conftest.py does the same for pytest).
    torch.set_num_threads(1)
    found = loader.discover(os.path.dirname(os.path.abspath(__file__)), pattern or "test*.py")
    standard_tests.addTests(fast_tier(found))
    return standard_tests
