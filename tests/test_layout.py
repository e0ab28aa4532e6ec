"""Where things live: the engine (utils/train) never imports the study (utils/study); submitit is
imported only by the launchers that need it; a launcher is one table entry."""
import ast
import os
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

import pytest

from tests import fixtures
from utils.study import launchers, parser, study
from utils.study.launchers import LAUNCHERS, Launcher, LauncherEntry

ENGINE = os.path.join(fixtures.REPO_ROOT, "utils", "train")


def imported_modules(path):
    """Every module a file imports, at any depth of its code (function-level imports included)."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


class EngineNeverImportsTheStudy(unittest.TestCase):
    def test_no_file_of_utils_train_imports_utils_study(self):
        files = sorted(f for f in os.listdir(ENGINE) if f.endswith(".py"))
        self.assertIn("run.py", files)
        for name in files:
            study_imports = [m for m in imported_modules(os.path.join(ENGINE, name))
                             if m.startswith(("utils.study", "utils.configs", "run_exp"))]
            self.assertEqual(study_imports, [], f"utils/train/{name} imports the study or the entry script")

    def test_no_library_module_imports_the_entry_script(self):
        for folder, _, files in os.walk(os.path.join(fixtures.REPO_ROOT, "utils")):
            for name in (f for f in files if f.endswith(".py")):
                self.assertNotIn("run_exp", [m.split(".")[0] for m in imported_modules(os.path.join(folder, name))],
                                 os.path.join(folder, name))

    def test_the_check_sees_function_level_imports(self):
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
            handle.write("def f():\n    from utils.study.sweep import run_job\n")
        self.addCleanup(os.unlink, handle.name)
        self.assertIn("utils.study.sweep", imported_modules(handle.name))


class Recorder(Launcher):
    """A launcher for the test: remembers what it was given, runs nothing."""

    given = []

    def run(self, jobs, opts, dist, title):
        Recorder.given.append([job.settings.exp_id for job in jobs])
        return [dict(label=job.label, status="completed", message="") for job in jobs], ["handle"]

    def finish(self, log_dir, handles, opts):
        return 7 if handles else None


class ALauncherIsOneTableEntry(unittest.TestCase):
    def test_every_entry_resolves_to_a_launcher(self):
        for name in LAUNCHERS:
            self.assertIsInstance(launchers.get_launcher(name), Launcher, name)

    def test_a_new_entry_is_used_by_the_study_and_the_parser(self):
        entry = LauncherEntry(f"{__name__}:Recorder", "record the jobs")
        Recorder.given = []
        with mock.patch.dict(LAUNCHERS, {"recorder": entry}):
            opts = parser.study_options({"launcher": "recorder"})
            code = study.run_study([2, 6], {"device": "cpu", "log_dir": "/nonexistent"}, opts, mock.MagicMock())
            from utils.study.parser import build_parser

            self.assertEqual(build_parser().parse_args(["--launcher", "recorder"]).launcher, "recorder")
        self.assertEqual(code, 7)  # the launcher's finish() ends the command
        self.assertEqual(Recorder.given, [["2", "6"]])

    def test_an_unknown_launcher_is_a_usage_error(self):
        from utils.train.settings import UsageError

        with self.assertRaisesRegex(UsageError, "inline, local, slurm"):
            launchers.get_launcher("pbs")


class AnOptimizerIsOneTableEntry(unittest.TestCase):
    def test_the_search_grid_comes_from_the_optimizer_entry(self):
        from utils.study import tuning
        from utils.train.optim import OPTIMIZERS, OptimizerSpec

        spec = OptimizerSpec(lambda o, p, s: o.RMSprop(p, lr=s.lr), ("lr",), (1e-3, 1e-2))
        with mock.patch.dict(OPTIMIZERS, {"rmsprop": spec}):
            grids = tuning.parse_grid("sgd=0.5")
            self.assertEqual(tuning.parse_grid("rmsprop=0.1")["rmsprop"], (0.1,))
        self.assertEqual(grids["rmsprop"], (1e-3, 1e-2))
        self.assertEqual(grids["sgd"], (0.5,))
        self.assertEqual(grids["adamw"], (1e-4, 3e-4, 1e-3, 3e-3, 1e-2))


def project_files():
    """The project's .py files outside tests/ and notebooks/."""
    for folder, dirs, files in os.walk(fixtures.REPO_ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("tests", "notebooks", "__pycache__")]
        yield from (os.path.join(folder, f) for f in files if f.endswith(".py"))


class OneDefinitionEach(unittest.TestCase):
    def defining(self, kind, name):
        found = []
        for path in project_files():
            with open(path) as handle:
                tree = ast.parse(handle.read(), path)
            found += [os.path.relpath(path, fixtures.REPO_ROOT) for node in ast.walk(tree)
                      if isinstance(node, kind) and node.name == name]
        return sorted(found)

    def test_usage_error_is_defined_once_and_imports_no_torch(self):
        self.assertEqual(self.defining(ast.ClassDef, "UsageError"), [os.path.join("utils", "errors.py")])
        self.assertEqual(imported_modules(os.path.join(fixtures.REPO_ROOT, "utils", "errors.py")), [])

    def test_entry_points_and_engine_share_it(self):
        import generate
        from utils.errors import UsageError
        from utils.train import settings

        self.assertIs(generate.UsageError, UsageError)
        self.assertIs(settings.UsageError, UsageError)

    def test_one_device_check_and_one_memory_probe(self):
        self.assertEqual(self.defining(ast.FunctionDef, "check_device"), [])
        self.assertEqual(self.defining(ast.FunctionDef, "resolve_device"), [os.path.join("utils", "train", "inputs.py")])
        self.assertEqual(self.defining(ast.FunctionDef, "peak_rss_mb"), [os.path.join("utils", "memory.py")])


class EpochResultHasNamedFields(unittest.TestCase):
    def test_names_and_the_course_tuple_agree(self):
        import math

        from utils.train.passes import EpochResult

        result = EpochResult(nll_sum=12.0, tokens=4, seconds=2.5, words=3)
        loss, ppl, seconds = result  # as the course notebook unpacks it
        self.assertEqual((loss, ppl, seconds), (3.0, math.exp(3.0), 2.5))
        self.assertEqual((result.loss, result.ppl, result.seconds), (loss, ppl, seconds))
        self.assertEqual(tuple(result), (3.0, math.exp(3.0), 2.5))
        self.assertEqual((result.tokens, result.tokens_per_second), (4, 4 / 2.5))
        self.assertAlmostEqual(result.word_perplexity, math.exp(12.0 / 3))


@pytest.mark.slow
class PlainTrainingNeverImportsSubmitit(unittest.TestCase):
    def test_a_smoke_study_run_inline_leaves_submitit_unimported(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = fixtures.write_corpus(os.path.join(tmp, "data"))
            emb = fixtures.write_embeddings(os.path.join(tmp, "emb.npz"))
            code = ("import sys, run_exp\n"
                    f"code = run_exp.cli(['--config', '2', '--smoke', '--data_folder', {data!r}, '--embeddings', "
                    f"{emb!r}, '--device', 'cpu', '--log_dir', {os.path.join(tmp, 'logs')!r}, '--print_every', '100'])\n"
                    "print('EXIT', code, 'SUBMITIT', 'submitit' in sys.modules)\n")
            done = subprocess.run([sys.executable, "-c", code], cwd=fixtures.REPO_ROOT, capture_output=True,
                                  text=True, timeout=300)
        self.assertIn("EXIT 0 SUBMITIT False", done.stdout, done.stdout + done.stderr)


if __name__ == "__main__":
    unittest.main()
