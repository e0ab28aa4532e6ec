"""The test tiers (tests/__init__.py): `python -m unittest` from the project root finds the fast tier;
a slow, slurm or notebook mark on a method, class, base class or module takes a test out of it; the
marks are the ones pyproject.toml registers; the SLURM tier says in one line what it lacks; test files
import their helpers through the package."""
import os
import re
import tomllib
import unittest
from unittest import mock

import pytest

import tests
from tests import conftest, fixtures, test_slurm

TESTS = os.path.dirname(os.path.abspath(tests.__file__))


def ids(suite):
    """The ids of a suite's tests, in order, however nested."""
    found = []
    for test in suite:
        found += ids(test) if isinstance(test, unittest.TestSuite) else [test.id()]
    return found


class FastTierFilter(unittest.TestCase):
    def test_marks_on_methods_classes_and_base_classes(self):
        class Plain(unittest.TestCase):
            def test_kept(self):
                pass

            @pytest.mark.notebook
            def test_marked(self):
                pass

        @pytest.mark.slow
        class Slow(unittest.TestCase):
            def test_dropped(self):
                pass

        class SlowChild(Slow):
            pass

        @pytest.mark.usefixtures("tmp_path")  # a mark that names no tier
        class Other(unittest.TestCase):
            def test_kept(self):
                pass

        cases = [Plain("test_kept"), Plain("test_marked"), Slow("test_dropped"), SlowChild("test_dropped"),
                 Other("test_kept")]
        suite = unittest.TestSuite([cases[0], unittest.TestSuite(cases[1:3]), unittest.TestSuite(cases[3:])])
        self.assertEqual(ids(tests.fast_tier(suite)), [cases[0].id(), cases[4].id()])
        self.assertEqual([tests.tiers_of(case) for case in cases], [set(), {"notebook"}, {"slow"}, {"slow"}, set()])

    def test_a_module_mark(self):
        name = unittest.TestLoader().getTestCaseNames(test_slurm.SweepOnSlurmAndLocally)[0]
        self.assertEqual(tests.tiers_of(test_slurm.SweepOnSlurmAndLocally(name)), {"slurm"})

    def test_unittest_from_the_root_runs_the_fast_tier(self):
        found = ids(unittest.TestLoader().discover(fixtures.REPO_ROOT))  # what `python -m unittest` runs
        modules = {test_id.split(".")[1] for test_id in found}
        self.assertLessEqual({"test_models", "test_fast_path", "test_data", "test_tokenizer", "test_report",
                              "test_training", "test_tiers"}, modules)
        self.assertEqual({"test_slurm", "test_distributed", "test_quickstart"} & modules, set())
        self.assertIn("tests.test_notebook.NotebookIsGenerated.test_main_ipynb_matches_its_generator", found)
        self.assertFalse(any(".NotebookSmokeRun." in test_id for test_id in found))
        self.assertFalse(any(test_id.startswith("unittest.loader") for test_id in found), "a test file fails to import")

    def test_the_tiers_are_the_registered_marks(self):
        with open(os.path.join(fixtures.REPO_ROOT, "pyproject.toml"), "rb") as handle:
            options = tomllib.load(handle)["tool"]["pytest"]["ini_options"]
        self.assertEqual(tuple(line.split(":")[0] for line in options["markers"]), tests.SLOW_TIERS)
        self.assertIn("--strict-markers", options["addopts"])  # a misspelt tier fails instead of running fast

    def test_the_slurm_tier_says_what_it_needs(self):
        start = os.path.join(conftest.local_slurm_dir(), "start-local-slurm.sh")
        with mock.patch.object(os, "geteuid", return_value=1000):
            problem = conftest.slurm_problem(start)
        self.assertIn("needs root", problem)
        self.assertEqual(len(problem.splitlines()), 1)
        with mock.patch.object(os, "geteuid", return_value=0):
            problem = conftest.slurm_problem(os.path.join(fixtures.REPO_ROOT, "no-such-folder", "start.sh"))
        self.assertIn("set LOCAL_SLURM_DIR", problem)
        self.assertEqual(len(problem.splitlines()), 1)

    def test_helpers_are_imported_through_the_package(self):
        bare = re.compile(r"^\s*(import (report_)?fixtures\b|from (report_)?fixtures import)", re.M)
        for name in sorted(os.listdir(TESTS)):
            if name.endswith(".py"):
                with open(os.path.join(TESTS, name)) as handle:
                    self.assertIsNone(bare.search(handle.read()), f"tests/{name}: import helpers as `from tests import "
                                      "fixtures` or `from tests.fixtures import ...` (unittest needs the package)")


if __name__ == "__main__":
    unittest.main()
