"""The README's quick start, from a copy of the project with nothing beside it (no ../shared):
bash quickstart.sh runs the smoke study of both models on the committed Wikitext-2 through the
command line and writes the report; each epoch trained on exactly the smoke preset's batches."""
import json
import math
import os
import subprocess
import tempfile
import unittest

import pytest

from tests import fixtures
from utils.data.batches import TensorBatches
from utils.data.wikitext2 import Wikitext2
from utils.train.settings import SMOKE


FAKE_PYTHON = """#!/bin/bash
echo "$*" >> "$(dirname "$0")/calls"
[ "$1 $2" = "-m pip" ] && { echo "ERROR: No matching distribution found for torch>=2.3" >&2; exit 1; }
exit 1  # -c "import torch": no torch installed
"""


@pytest.mark.slow
class QuickStartWithoutPyTorchsIndex(unittest.TestCase):
    def test_a_failed_torch_install_ends_with_what_to_do(self):
        for gpu in (False, True):  # the CPU index, and the default index where nvidia-smi exists
            with self.subTest(gpu=gpu), tempfile.TemporaryDirectory() as tmp:
                for name, text in [("python", FAKE_PYTHON)] + [("nvidia-smi", "#!/bin/bash\n")] * gpu:
                    with open(os.path.join(tmp, name), "w") as handle:
                        handle.write(text)
                    os.chmod(os.path.join(tmp, name), 0o755)
                env = dict(os.environ, PATH=f"{tmp}:/usr/bin:/bin")
                env.pop("SKIP_INSTALL", None)
                done = subprocess.run(["bash", os.path.join(fixtures.REPO_ROOT, "quickstart.sh")], env=env,
                                      capture_output=True, text=True, timeout=60)
                self.assertEqual(done.returncode, 1, done.stderr)
                last = done.stderr.strip().splitlines()[-1]
                self.assertIn("install torch yourself (e.g. pip install torch", last)
                self.assertIn("then rerun bash quickstart.sh", last)
                with open(os.path.join(tmp, "calls")) as handle:
                    calls = handle.read().splitlines()
                self.assertEqual(len(calls), 2, calls)  # the torch check and the torch install, nothing after
                self.assertEqual("download.pytorch.org/whl/cpu" in calls[1], not gpu)


@pytest.mark.slow
class QuickStartFromAClone(unittest.TestCase):
    def test_quickstart_in_a_clean_copy(self):
        with tempfile.TemporaryDirectory() as tmp:
            clone = os.path.join(tmp, "project")  # tmp holds nothing else: no ../shared beside it
            files = subprocess.run(["git", "ls-files", "-z"], cwd=fixtures.REPO_ROOT, capture_output=True,
                                   check=True).stdout.decode().split("\0")
            subprocess.run(["tar", "-cf", os.path.join(tmp, "files.tar"), "--null", "-T", "-"], cwd=fixtures.REPO_ROOT,
                           input="\0".join(f for f in files if f).encode(), check=True)
            os.makedirs(clone)
            subprocess.run(["tar", "-xf", os.path.join(tmp, "files.tar")], cwd=clone, check=True)
            self.assertFalse(os.path.exists(os.path.join(tmp, "shared")))
            # GPT-1-shaped random embeddings: building the stand-in is tested on its own (minutes here).
            embeddings = fixtures.write_embeddings(os.path.join(tmp, "emb.npz"), vocab=40479, width=768, positions=512)
            # The environment running the tests is already installed: CI installs it with the same files.
            # `python` in the script is this interpreter; PYTHONPATH="" so that the copy imports itself.
            env = fixtures.python_env(os.path.join(tmp, "bin"), EMBEDDINGS=embeddings, SKIP_INSTALL="1", PYTHONPATH="")
            done = subprocess.run(["bash", "quickstart.sh"], cwd=clone, env=env, capture_output=True, text=True,
                                  timeout=1200)
            self.assertEqual(done.returncode, 0, done.stdout[-2000:] + done.stderr[-3000:])
            for run in ("2", "6"):
                with open(os.path.join(clone, "logs_smoke", run, "status.json")) as handle:
                    self.assertIn('"completed"', handle.read())
            self.check_smoke_batches(os.path.join(clone, "logs_smoke"))
            for name in ("results.md", "results.csv", "experiment_2.png", "experiment_6.png"):
                self.assertTrue(os.path.isfile(os.path.join(clone, "plots_smoke", name)), name)
            self.assertIn("Done: runs in logs_smoke/", done.stdout)

    def check_smoke_batches(self, log_dir):
        """Every smoke epoch trained on the first max_batches batches of that epoch's seeded order."""
        batches = TensorBatches(Wikitext2(fixtures.WIKITEXT2, "train"), SMOKE["batch_size"], shuffle=True, seed=42)
        for epoch in range(SMOKE["epochs"]):
            batches.set_epoch(epoch)
            expected = sum(float(b["mask"].sum()) for _, b in zip(range(SMOKE["max_batches"]), batches))
            for exp_id in ("2", "6"):
                with open(os.path.join(log_dir, exp_id, "metrics.jsonl")) as handle:
                    metrics = [json.loads(line) for line in handle]
                self.assertEqual(len(metrics), SMOKE["epochs"])
                self.assertEqual(metrics[epoch]["train_tokens"], expected)
                self.assertTrue(math.isfinite(metrics[epoch]["valid_ppl"]))
                self.assertGreater(metrics[epoch]["valid_ppl"], 1000, "random embeddings, 2 steps: near uniform")
