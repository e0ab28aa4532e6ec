"""Where the repository and the shared data are, for the tests.

Importing this module puts the repository root on sys.path, so that the tests import the
project's modules (`gpt1_solution`, `utils.wikitext2`, ...) however they are run:
`python -m unittest discover -s tests` or `pytest tests` from the repository root. Test files
do `sys.path.insert(0, <tests folder>); import _paths` first.

The real Wikitext-2 files are looked up in `../shared/data/wikitext2` relative to the
repository root (not to the current directory), or in $WIKITEXT2_DIR when it is set.
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

DEFAULT_WIKITEXT2_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "wikitext2"))


def wikitext2_dir():
    """$WIKITEXT2_DIR if set (relative paths are taken from the current directory), else the shared copy."""
    folder = os.environ.get("WIKITEXT2_DIR")
    return os.path.abspath(folder) if folder else DEFAULT_WIKITEXT2_DIR


def wikitext2_skip_reason():
    """Always None: the real-data tests never skip. Without the files they fail and name the
    missing path, since CI and every checkout have ../shared beside them."""
    return None
