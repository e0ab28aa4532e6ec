"""What pytest's session shares: one torch thread, the default (fast) tier, the SLURM cluster.
The tiers are described in tests/__init__.py; test helpers live in tests/fixtures.py."""
import os
import subprocess

import pytest
import torch

from tests import SLOW_TIERS
from tests.fixtures import local_slurm_dir, slurm_problem

# The tests' models are tiny: one thread computes them as fast as two, and OpenMP's spinning
# threads slow them 10-20x when the other core is busy. Subprocesses (the notebook, torchrun,
# SLURM jobs, the quick start) choose their own threads.
torch.set_num_threads(1)


def in_slow_tier(item):
    return any(item.get_closest_marker(tier) for tier in SLOW_TIERS)


def pytest_collection_modifyitems(config, items):
    """Without -m, a folder (`pytest tests`) means its fast tier: the tests marked with a slow tier
    are deselected. Tests named by file or node id run whatever their tier; -m selects tiers."""
    paths = [os.path.join(config.invocation_params.dir, arg.split("::")[0]) for arg in config.args]
    if config.option.markexpr or not any(os.path.isdir(path) for path in paths):
        return
    slow = [item for item in items if in_slow_tier(item)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not in_slow_tier(item)]


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real SLURM cluster on this machine for the session's tests that ask for it: started once
    (idempotent when it is already up), stopped at the end. A cluster that cannot start FAILS those
    tests: a silently skipped launcher test would pass CI with an untested launcher."""
    folder = local_slurm_dir()
    start = os.path.join(folder, "start-local-slurm.sh")
    problem = slurm_problem(start)
    if problem:
        pytest.fail(problem, pytrace=False)
    done = subprocess.run(["bash", start], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"The local SLURM cluster did not start ({start}, exit {done.returncode}):\n"
                    + (done.stdout + done.stderr)[-4000:])
    yield os.environ.get("SLURM_LOCAL_PARTITION", "debug")
    subprocess.run(["bash", os.path.join(folder, "stop-local-slurm.sh")], capture_output=True, check=False)
