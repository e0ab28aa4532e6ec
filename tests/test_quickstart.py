"""The README's quick start, from a copy of the project with nothing beside it (no ../shared):
bash quickstart.sh runs the smoke study on the committed data and writes the report."""
import os
import subprocess
import tempfile
import unittest

import fixtures


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
            env = dict(os.environ, EMBEDDINGS=embeddings, SKIP_INSTALL="1", PYTHONPATH="")
            done = subprocess.run(["bash", "quickstart.sh"], cwd=clone, env=env, capture_output=True, text=True,
                                  timeout=1200)
            self.assertEqual(done.returncode, 0, done.stdout[-2000:] + done.stderr[-3000:])
            for run in ("2", "6"):
                with open(os.path.join(clone, "logs_smoke", run, "status.json")) as handle:
                    self.assertIn('"completed"', handle.read())
            for name in ("results.md", "results.csv", "experiment_2.png", "experiment_6.png"):
                self.assertTrue(os.path.isfile(os.path.join(clone, "plots_smoke", name)), name)
            self.assertIn("Done: runs in logs_smoke/", done.stdout)
