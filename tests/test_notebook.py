"""notebooks/main.ipynb, executed with nbclient on the CPU smoke preset against the real Wikitext-2,
with its logs, plots and embeddings in a temporary folder (set through LM_* environment variables).

It runs all 12 configurations, as users do; LM_CONFIGS="1,6" (say) in the environment makes the
sweep, and these checks, cover only those (configuration 1 always runs first).

The embeddings are a random fixture of the real shape (building the stand-in takes minutes): the
notebook's numbers are meaningless on the smoke preset anyway; what is checked is that every part
runs and leaves logs, figures and tables behind.
"""
import csv
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
import types
import unittest
from unittest import mock

import numpy as np
import pytest

from tests import fixtures
from tests.report_fixtures import config_args, write_run
from utils.study.configs import GROUPS, parse_config_list

NOTEBOOKS = os.path.join(fixtures.REPO_ROOT, "notebooks")
NOTEBOOK = os.path.join(NOTEBOOKS, "main.ipynb")
VOCABULARY, WIDTH, POSITIONS = 40479, 768, 512  # GPT-1's embedding file
CONFIGS_RUN = sorted(set(parse_config_list(os.environ.get("LM_CONFIGS", "all"))) | {1})


def write_test_embeddings(path, seed=0):
    """Token rows ~ N(0, 0.1^2) with row 0 (padding) zero, and sinusoidal positions of the same scale."""
    rng = np.random.default_rng(seed)
    tokens = (rng.standard_normal((VOCABULARY, WIDTH), dtype=np.float32) * 0.1).astype(np.float32)
    tokens[0] = 0.0
    angles = np.arange(POSITIONS)[:, None] / 10000 ** (np.arange(0, WIDTH, 2) / WIDTH)[None, :]
    position = np.zeros((POSITIONS, WIDTH), dtype=np.float32)
    position[:, 0::2], position[:, 1::2] = np.sin(angles) * 0.1, np.cos(angles) * 0.1
    np.savez(path, tokens=tokens, position=position)


def outputs_of(notebook, output_type):
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
            if o.output_type == output_type]


class NotebookIsGenerated(unittest.TestCase):
    def test_main_ipynb_matches_its_generator(self):
        expected = [c["source"] for c in make_notebook_module().build()["cells"]]
        with open(NOTEBOOK) as handle:  # json, not nbformat: the fast tier needs only requirements.txt
            actual = ["".join(c["source"]) for c in json.load(handle)["cells"]]
        self.assertEqual(actual, expected, "main.ipynb is stale: run python notebooks/make_notebook.py")


def make_notebook_module():
    spec = importlib.util.spec_from_file_location("make_notebook", os.path.join(NOTEBOOKS, "make_notebook.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LiveCurves(unittest.TestCase):
    """The notebook's curves cell, run as the notebook runs it (its source, in a namespace of its own)."""

    def setUp(self):
        self.cell = {"os": os}
        exec(make_notebook_module().CURVES, self.cell)
        self.tmp = tempfile.TemporaryDirectory()
        self.logs = self.tmp.name
        write_run(self.logs, "1", config_args(1), [300.0, 200.0, 150.0], [400.0, 250, 180], [1.0] * 3)
        write_run(self.logs, "5", config_args(5), [500.0, float("nan")], [600.0, 550.0], [1.0] * 2, status="diverged")
        os.makedirs(os.path.join(self.logs, "7"))  # started, nothing logged yet

    def tearDown(self):
        self.tmp.cleanup()

    def test_one_line_per_run_with_its_logged_validation_perplexities(self):
        ax = self.cell["plot_curves"](self.logs).axes[0]
        lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
        self.assertEqual(lines, {"1: LSTM x1, adam (completed)": ([1, 2, 3], [300.0, 200.0, 150.0]),
                                 "5: MiniGPT1 x1, adam (diverged)": ([1], [500.0])})  # a NaN epoch is not drawn
        self.assertEqual(ax.get_yscale(), "linear")  # 150-500: not a decade (the report's rule)

    def test_redrawn_when_a_run_logs_an_epoch(self):
        shown = []
        updated = threading.Event()

        class Handle:
            def update(self, image):
                shown.append(image)
                updated.set()

        display = types.ModuleType("IPython.display")
        display.Image = lambda data: data
        display.display = lambda image, display_id: shown.append(image) or Handle()
        ipython = types.ModuleType("IPython")  # a stand-in: IPython comes with requirements-dev.txt's ipykernel
        ipython.version_info = (9, 0)  # matplotlib asks
        with fixtures.stand_in_modules({"IPython": ipython, "IPython.display": display}):
            with self.cell["live_curves"](self.logs, seconds=0.01):
                self.assertEqual(len(shown), 1)  # drawn once at the start
                write_run(self.logs, "7", config_args(7), [900.0], [950.0], [1.0], status="running")
                self.assertTrue(updated.wait(60), "no redraw after run 7 logged its first epoch")
        self.assertGreaterEqual(len(shown), 3)  # the start, the new epoch, the end
        self.assertTrue(all(image.startswith(b"\x89PNG") for image in shown))


@pytest.mark.notebook
class NotebookSmokeRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import nbformat  # requirements-dev.txt: imported by the notebook tier only
        from nbclient import NotebookClient

        cls.tmp = tempfile.TemporaryDirectory()
        cls.logs, cls.plots = os.path.join(cls.tmp.name, "logs"), os.path.join(cls.tmp.name, "plots")
        embeddings = os.path.join(cls.tmp.name, "embeddings.npz")
        write_test_embeddings(embeddings)
        env = dict(LM_SMOKE="1", LM_LOG_DIR=cls.logs, LM_PLOT_DIR=cls.plots, LM_EMBEDDINGS=embeddings,
                   LM_DATA_FOLDER=fixtures.WIKITEXT2)
        with open(NOTEBOOK) as handle:
            cls.notebook = nbformat.read(handle, as_version=4)
        client = NotebookClient(cls.notebook, timeout=1200, kernel_name="python3",
                                resources={"metadata": {"path": NOTEBOOKS}})
        start = time.perf_counter()
        with mock.patch.dict(os.environ, env):  # the kernel inherits this environment
            client.execute()
        cls.seconds = time.perf_counter() - start
        print(f"\nnotebook on the smoke preset: {cls.seconds:.0f} s", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @staticmethod
    def expected_figures():
        groups = [name for name, numbers in GROUPS.items() if set(numbers) & set(CONFIGS_RUN)]
        return [f"experiment_{n}.png" for n in CONFIGS_RUN] + [f"compare_{g}.png" for g in groups]

    def test_no_cell_failed(self):
        self.assertEqual(outputs_of(self.notebook, "error"), [])

    def test_every_run_completed_on_the_smoke_preset(self):
        self.assertEqual(sorted(os.listdir(self.logs), key=int), [str(n) for n in CONFIGS_RUN])
        for number in CONFIGS_RUN:
            with open(os.path.join(self.logs, str(number), "status.json")) as handle:
                self.assertEqual(json.load(handle)["status"], "completed", f"configuration {number}")
            with open(os.path.join(self.logs, str(number), "args.json")) as handle:
                args = json.load(handle)
            self.assertEqual((args["config"], args["smoke"]), (number, True))

    def test_report_files_and_table(self):
        for name in self.expected_figures() + ["results.md", "results.tex", "results.csv"]:
            self.assertTrue(os.path.isfile(os.path.join(self.plots, name)), name)
        with open(os.path.join(self.plots, "results.csv")) as handle:
            rows = list(csv.DictReader(handle))
        self.assertEqual([int(r["config"]) for r in rows], CONFIGS_RUN)
        self.assertTrue(all(float(r["best_valid_ppl"]) > 1 for r in rows))

    def test_figures_and_tables_are_shown_inline(self):
        report = [c for c in self.notebook.cells if c.cell_type == "code" and "generate_report" in c.source]
        figures = self.notebook.cells[self.notebook.cells.index(report[0]):]
        shown = [o for c in figures if c.cell_type == "code" for o in c.outputs if o.output_type == "display_data"]
        self.assertEqual(sum("image/png" in o.data for o in shown), len(self.expected_figures()))
        self.assertTrue(any("Fastest configuration" in o.data.get("text/markdown", "") for o in shown))

    def test_the_training_cells_show_curves_and_few_lines(self):
        cells = [c for c in self.notebook.cells if c.cell_type == "code" and "with live_curves(LOG_DIR)" in c.source]
        self.assertEqual(len(cells), 2)  # configuration 1, then the sweep
        for cell in cells:
            images = [o for o in cell.outputs if o.output_type == "display_data" and "image/png" in o.data]
            self.assertEqual(len(images), 1, "one figure per cell, redrawn in place")
            self.assertTrue(images[0].data["image/png"])
        lines = "".join(o.text for c in cells for o in c.outputs if o.output_type == "stream").splitlines()
        print(f"\nthe training cells printed {len(lines)} lines for {len(CONFIGS_RUN)} runs", file=sys.stderr)
        self.assertLessEqual(len(lines), 20 * len(CONFIGS_RUN), "\n".join(lines))


if __name__ == "__main__":
    unittest.main()
