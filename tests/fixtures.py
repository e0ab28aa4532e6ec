"""What the tests share: where the project and its committed data are, small data the tests make
(a synthetic corpus in the course's .npz format, tiny embeddings), and how they run a command line
(in this process, or as a subprocess of this Python).

The real Wikitext-2 files are the project's own copies in data/ (never ../shared), or
$WIKITEXT2_DIR when it is set.
"""
import contextlib
import io
import os
import subprocess
import sys

import numpy as np

from utils.data import BPE_FOLDER, PROJECT_DATA

REPO_ROOT = os.path.dirname(PROJECT_DATA)
WIKITEXT2 = os.path.abspath(os.environ.get("WIKITEXT2_DIR") or PROJECT_DATA)
BPE = BPE_FOLDER
SEED_NOTEBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "main_notebook_export.txt")

TINY_VOCAB, TINY_WIDTH = 50, 24


def write_corpus(folder, lines_per_split=(40, 9, 7), vocab=TINY_VOCAB, seed=0):
    """wiki.{train,validation,test}.npz with lines of 5..120 tokens whose next token is
    partly predictable (so training visibly lowers the loss)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for split, n_lines in zip(("train", "validation", "test"), lines_per_split):
        sizes = rng.integers(5, 120, size=n_lines)
        tokens = np.empty(sizes.sum(), dtype=np.uint16)
        tokens[0] = 1
        for i in range(1, len(tokens)):
            tokens[i] = (tokens[i - 1] * 7 + 3) % (vocab - 1) + 1 if rng.random() < 0.7 else rng.integers(1, vocab)
        np.savez(os.path.join(folder, f"wiki.{split}.npz"), tokens=tokens, sizes=sizes.astype(np.int64))
    return folder


def write_embeddings(path, vocab=TINY_VOCAB, width=TINY_WIDTH, positions=256, seed=0):
    rng = np.random.default_rng(seed)
    tokens = (rng.standard_normal((vocab, width)) * 0.5).astype(np.float32)
    tokens[0] = 0.0
    position = (rng.standard_normal((positions, width)) * 0.05).astype(np.float32)
    np.savez(path, tokens=tokens, position=position)
    return path


def run_main(main, *argv):
    """(exit code, stdout, stderr) of a command line's main(argv) run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def python_env(folder=None, **variables):
    """os.environ with the project importable, plus `variables`. With a `folder` (which receives a
    wrapper), `python` on PATH is this interpreter, a venv's included, activated or not: a script
    such as quickstart.sh then runs the environment under test."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
        wrapper = os.path.join(folder, "python")
        with open(wrapper, "w") as handle:
            handle.write(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        os.chmod(wrapper, 0o755)
        env["PATH"] = os.pathsep.join([folder, os.environ.get("PATH", "")])
    env.update(variables)
    return env


def run_python(*args, env=None, cwd=REPO_ROOT, timeout=600):
    """`python ARGS` run by this interpreter as a subprocess, from the project root with the project
    importable (or in `env`): the finished process, with its output as text."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env or python_env(), capture_output=True, text=True,
                          timeout=timeout)


def local_slurm_dir():
    """The start/stop scripts of the one-node SLURM cluster: $LOCAL_SLURM_DIR, else ../shared/slurm."""
    return os.environ.get("LOCAL_SLURM_DIR") or os.path.join(os.path.dirname(REPO_ROOT), "shared", "slurm")


def slurm_problem(start):
    """Why the cluster cannot be started here with the script `start`, in one line; None if it can."""
    if os.geteuid() != 0:
        return ("The SLURM tier (-m slurm) needs root: start-local-slurm.sh installs SLURM with apt and starts its "
                "daemons. Run it as root (as CI does), or leave the tier out.")
    if not os.path.isfile(start):
        return (f"No SLURM start script at {start}: set LOCAL_SLURM_DIR to the folder of start-local-slurm.sh "
                "and stop-local-slurm.sh.")
    return None


@contextlib.contextmanager
def stand_in_modules(modules):
    """sys.modules[name] = module for each of `modules` (a dict) while the block runs, then the previous
    entries back; unlike mock.patch.dict(sys.modules), modules the block imports stay loaded (numpy's
    extensions cannot be loaded twice)."""
    before = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in before.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
