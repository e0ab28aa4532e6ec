"""The test tiers (tests/__init__.py): `python -m unittest` from the project root finds the fast tier;
a slow, slurm or notebook mark on a method, class, base class or module takes a test out of it; the
marks are the ones pyproject.toml registers; the SLURM tier says in one line what it lacks; test files
import their helpers through the package."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
import unittest
from unittest import mock

import pytest

import tests
from tests import fixtures, test_slurm

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
        start = os.path.join(fixtures.local_slurm_dir(), "start-local-slurm.sh")
        with mock.patch.object(os, "geteuid", return_value=1000):
            problem = fixtures.slurm_problem(start)
        self.assertIn("needs root", problem)
        self.assertEqual(len(problem.splitlines()), 1)
        with mock.patch.object(os, "geteuid", return_value=0):
            problem = fixtures.slurm_problem(os.path.join(fixtures.REPO_ROOT, "no-such-folder", "start.sh"))
        self.assertIn("set LOCAL_SLURM_DIR", problem)
        self.assertEqual(len(problem.splitlines()), 1)

    def test_helpers_are_imported_through_the_package(self):
        bare = re.compile(r"^\s*(import (report_)?fixtures\b|from (report_)?fixtures import)", re.M)
        for name in sorted(os.listdir(TESTS)):
            if name.endswith(".py"):
                with open(os.path.join(TESTS, name)) as handle:
                    self.assertIsNone(bare.search(handle.read()), f"tests/{name}: import helpers as `from tests import "
                                      "fixtures` or `from tests.fixtures import ...` (unittest needs the package)")


def dev_only_modules():
    """The import names of requirements-dev.txt's packages (pytest, nbclient, nbformat, ipykernel)."""
    with open(os.path.join(fixtures.REPO_ROOT, "requirements-dev.txt")) as handle:
        names = [re.split(r"[<>=~!\[ ;]", line.split("#")[0].strip())[0] for line in handle]
    return sorted(name.replace("-", "_") for name in names if name)


# Run first in a subprocess: any import of a requirements-dev.txt package fails, as where only
# requirements.txt is installed.
BLOCK_DEV = """import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("No module named " + repr(name) + " (blocked: requirements-dev.txt)")
sys.meta_path.insert(0, Blocker())
"""

LOAD_AND_RUN = """import json, unittest
from tests.test_tiers import ids
found = unittest.TestLoader().discover(".")  # what `python -m unittest` loads from the root
mine = [t for t in ids(found) if t.split(".")[1] == "test_notebook"]
outcome = unittest.TextTestRunner(verbosity=0).run(unittest.TestLoader().loadTestsFromNames(mine))
print(json.dumps(dict(found=ids(found), mine=len(mine), ran=outcome.testsRun,
                      errors=len(outcome.errors) + len(outcome.failures), stub="_pytest" not in sys.modules)))
"""

# A stand-in for the course's tests_lstm_public.py: the same imports and decorators, one check.
COURSE_TEST = """import unittest

from gradescope_utils.autograder_utils.decorators import number, visibility, weight
from lstm_solution import LSTM


class TestLSTM(unittest.TestCase):
    @weight(2)
    @number("1.1")
    @visibility("visible")
    def test_lstm_builds(self):
        self.assertEqual(self.test_lstm_builds.__weight__, 2)
        self.assertEqual(LSTM(vocabulary_size=11, embedding_size=4, hidden_size=3, num_layers=1).num_layers, 1)
"""


@pytest.mark.slow
class OnlyTheRequirements(unittest.TestCase):
    def test_the_fast_tier_loads_and_runs_without_the_dev_packages(self):
        blocked = dev_only_modules()
        self.assertLessEqual({"pytest", "nbformat", "nbclient"}, set(blocked))
        done = fixtures.run_python("-c", BLOCK_DEV.format(blocked=blocked) + LOAD_AND_RUN, timeout=300)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        result = json.loads(done.stdout.splitlines()[-1])
        self.assertTrue(result["stub"], "pytest was imported despite the block")
        self.assertEqual([t for t in result["found"] if t.startswith("unittest.loader")], [],
                         "a test file fails to import without requirements-dev.txt")
        self.assertIn("tests.test_notebook.NotebookIsGenerated.test_main_ipynb_matches_its_generator", result["found"])
        self.assertFalse(any(".NotebookSmokeRun." in t or ".SeedNotebookTest." in t for t in result["found"]),
                         "the stand-in marks must still take the notebook tier out")
        self.assertFalse(any(t.startswith("tests.test_distributed.") for t in result["found"]))
        self.assertGreater(len(result["found"]), 100)
        self.assertGreaterEqual(result["mine"], 3)  # the generator check and the live curves
        self.assertEqual((result["ran"], result["errors"]), (result["mine"], 0), done.stderr[-3000:])

    def test_the_course_tests_dropped_at_the_root(self):
        with tempfile.TemporaryDirectory() as tmp:
            listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                    cwd=fixtures.REPO_ROOT, capture_output=True, check=True).stdout.decode()
            for name in filter(None, listed.split("\0")):
                source = os.path.join(fixtures.REPO_ROOT, name)
                if os.path.isfile(source):
                    os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
                    shutil.copy(source, os.path.join(tmp, name))
            with open(os.path.join(tmp, "tests_lstm_public.py"), "w") as handle:
                handle.write(COURSE_TEST)
            # The course's file and the kit's own check that nothing discovered from the root fails to import.
            done = fixtures.run_python("-m", "unittest", "-v", "tests_lstm_public",
                                       "tests.test_tiers.FastTierFilter.test_unittest_from_the_root_runs_the_fast_tier",
                                       cwd=tmp, env=fixtures.python_env(PYTHONPATH=tmp), timeout=300)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        self.assertIn("test_lstm_builds (tests_lstm_public.TestLSTM", done.stderr)
        self.assertIn("Ran 2 tests", done.stderr)


if __name__ == "__main__":
    unittest.main()
