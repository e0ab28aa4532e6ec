"""The course notebook users run today (a text export kept in tests/data/) keeps working against this project:
its imports, its Arguments dataclass, its main(), its save_logs(args, *logs) call and its
analysis cell that reads logs/<exp_id>/*.txt, executed as written on small data."""
import os
import re
import tempfile
import unittest

import pytest

from tests import fixtures

NOTEBOOK = fixtures.SEED_NOTEBOOK


def extract(text, start, end):
    """The source between the line starting with `start` and the line starting with `end` (inclusive)."""
    match = re.search(rf"^{re.escape(start)}.*?^{re.escape(end)}[^\n]*\n", text, re.S | re.M)
    if match is None:
        raise AssertionError(f"notebook export has no block from {start!r} to {end!r}")
    return match.group(0)


def notebook_code(text):
    imports = extract(text, "import numpy as np", "EMBEDDINGS_URL")
    arguments = extract(text, "@dataclass", "  print_every")
    main = extract(text, "def main(args):", "    avg_steady_state_memory") + "  )\n"  # closes its return
    plot = extract(text, "def plot_for_experiment(exp_id):", "    plt.close(fig)")
    # What the notebook's Colab cell (pip install) and its plot cell import around these cells.
    setup = "import os\nimport sys\nimport json\nimport torch\nimport matplotlib\nmatplotlib.use('Agg')\n"
    return setup + imports + arguments + main + 'base_dir = "logs/"\nsave_folder = "plots/"\n' + plot


@pytest.mark.notebook
class SeedNotebookTest(unittest.TestCase):
    def test_notebook_code_runs_unchanged(self):
        self.assertTrue(os.path.isfile(NOTEBOOK), f"the seed notebook export is missing: {NOTEBOOK}")
        with open(NOTEBOOK) as handle:
            code = notebook_code(handle.read())
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        folder = fixtures.write_corpus(os.path.join(tmp.name, "data"))
        emb = fixtures.write_embeddings(os.path.join(folder, "embeddings.npz"))
        cwd = os.getcwd()
        os.chdir(tmp.name)
        self.addCleanup(os.chdir, cwd)
        namespace = {"__name__": "seed_notebook"}
        exec(compile(code, "main_notebook_export", "exec"), namespace)
        for model in ("lstm", "gpt1"):
            # 2 epochs: the notebook's plot cell calls len() on np.loadtxt, which fails on a 1-line file.
            args = namespace["Arguments"](
                data_folder=folder, embeddings=emb, model=model, epochs=2, exp_id=model, log_dir="logs",
                device="cpu", num_workers=0, print_every=1000, batch_size=8,
            )
            logs = namespace["main"](args)
            self.assertEqual(len(logs), 10)
            namespace["save_logs"](args, *logs)
            namespace["plot_for_experiment"](model)
            self.assertTrue(os.path.isfile(os.path.join("plots", f"experiment_{model}.png")))
            with open(os.path.join("logs", model, "valid_ppl.txt")) as handle:
                self.assertAlmostEqual(float(handle.read().split()[0]), logs[4][0])
            self.assertGreater(logs[4][0], 1.5, "a perplexity near 1 would mean a causal leak")


if __name__ == "__main__":
    unittest.main()
