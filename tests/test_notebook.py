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
import time
import unittest
from unittest import mock

import numpy as np
import pytest

from tests import fixtures
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
        spec = importlib.util.spec_from_file_location("make_notebook", os.path.join(NOTEBOOKS, "make_notebook.py"))
        make_notebook = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(make_notebook)

        expected = [c["source"] for c in make_notebook.build()["cells"]]
        with open(NOTEBOOK) as handle:  # json, not nbformat: the fast tier needs only requirements.txt
            actual = ["".join(c["source"]) for c in json.load(handle)["cells"]]
        self.assertEqual(actual, expected, "main.ipynb is stale: run python notebooks/make_notebook.py")


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
        shown = outputs_of(self.notebook, "display_data")
        self.assertEqual(sum("image/png" in o.data for o in shown), len(self.expected_figures()))
        self.assertTrue(any("Fastest configuration" in o.data.get("text/markdown", "") for o in shown))


if __name__ == "__main__":
    unittest.main()
