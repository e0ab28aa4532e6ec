"""Colab and a fresh machine keep the torch they have: the notebook installs the requirements without
torch and stops in one line on a Colab runtime without a GPU; quickstart.sh installs torch only
where none is importable, from PyTorch's CPU index on a machine without an NVIDIA GPU."""
import os
import unittest
from unittest import mock

from tests import fixtures


def _notebook_cells():
    import importlib.util

    path = os.path.join(fixtures.REPO_ROOT, "notebooks", "make_notebook.py")
    spec = importlib.util.spec_from_file_location("make_notebook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ColabKeepsItsTorchAndNeedsAGpu(unittest.TestCase):
    def test_no_gpu_on_colab_stops_with_one_line(self):
        cells = _notebook_cells()
        with mock.patch("torch.cuda.is_available", return_value=False), mock.patch.dict(os.environ, clear=False) as env:
            env.pop("LM_SMOKE", None)
            with self.assertRaises(Exception) as caught:
                exec(cells.GPU, {"IN_COLAB": True, "os": os})
            lines = caught.exception._render_traceback_()
            self.assertEqual(len(lines), 1)
            self.assertIn("No GPU in this Colab runtime", lines[0])
            local = {"IN_COLAB": False, "os": os}
            with mock.patch("builtins.print"):
                exec(cells.GPU, local)
            self.assertEqual(local["DEVICE"], "cpu")

    def test_requirements_never_replace_an_installed_torch(self):
        cells = _notebook_cells()
        self.assertNotIn('"-r", "requirements.txt"', cells.SETUP)
        root = fixtures.REPO_ROOT
        with open(os.path.join(root, "requirements.txt")) as handle:
            torch_lines = [line.split("#")[0].strip() for line in handle if line.lower().startswith("torch")]
        self.assertEqual(torch_lines, ["torch>=2.3"])  # a lower bound only


@unittest.skipUnless(os.path.isfile("/bin/bash"), "needs bash")
class QuickStartInstallsTorchOnlyWhenMissing(unittest.TestCase):
    """quickstart.sh with `python` (and `nvidia-smi`) replaced by stubs that log their arguments."""

    def run_quickstart(self, has_torch, has_gpu):
        import subprocess
        import tempfile

        root = fixtures.REPO_ROOT
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "calls")
            with open(os.path.join(tmp, "python"), "w") as stub:
                stub.write(f'#!/bin/sh\necho "$*" >> {log}\n'
                           f'case "$*" in "-c import torch") exit {0 if has_torch else 1};; esac\nexit 0\n')
            os.chmod(os.path.join(tmp, "python"), 0o755)
            if has_gpu:
                with open(os.path.join(tmp, "nvidia-smi"), "w") as stub:
                    stub.write("#!/bin/sh\nexit 0\n")
                os.chmod(os.path.join(tmp, "nvidia-smi"), 0o755)
            embeddings = os.path.join(tmp, "emb.npz")
            open(embeddings, "w").close()
            env = dict(os.environ, PATH=f"{tmp}:/usr/bin:/bin", EMBEDDINGS=embeddings)
            env.pop("SKIP_INSTALL", None)
            subprocess.run(["bash", os.path.join(root, "quickstart.sh")], env=env, check=True, capture_output=True)
            with open(log) as handle:
                return [line.strip() for line in handle if "pip install" in line]

    def test_torch_installed_is_kept(self):
        installs = self.run_quickstart(has_torch=True, has_gpu=False)
        self.assertEqual(len(installs), 1)
        self.assertIn("-r requirements.txt", installs[0])

    def test_cpu_machine_gets_the_cpu_wheel(self):
        installs = self.run_quickstart(has_torch=False, has_gpu=False)
        self.assertIn("--index-url https://download.pytorch.org/whl/cpu", installs[0])
        self.assertIn("torch>=2.3", installs[0])

    def test_gpu_machine_gets_the_default_index(self):
        installs = self.run_quickstart(has_torch=False, has_gpu=True)
        self.assertIn("torch>=2.3", installs[0])
        self.assertNotIn("index-url", installs[0])
