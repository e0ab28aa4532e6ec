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
WIKITEXT2_FILES = ("wiki.train.npz", "wiki.validation.npz", "wiki.test.npz")


def wikitext2_dir():
    """$WIKITEXT2_DIR if set (relative paths are taken from the current directory), else the shared copy."""
    folder = os.environ.get("WIKITEXT2_DIR")
    return os.path.abspath(folder) if folder else DEFAULT_WIKITEXT2_DIR


def wikitext2_skip_reason():
    """None when the real files are there; else why the real-data tests are skipped.

    An explicit $WIKITEXT2_DIR that lacks the files is a configuration error, not a skip:
    the tests that need the data then fail loudly instead of silently not running.
    """
    folder = wikitext2_dir()
    missing = [name for name in WIKITEXT2_FILES if not os.path.isfile(os.path.join(folder, name))]
    if not missing:
        return None
    if os.environ.get("WIKITEXT2_DIR"):
        return None  # let the tests run and fail, naming the missing file
    return f"real Wikitext-2 files not found in {folder} (missing {', '.join(missing)}); set WIKITEXT2_DIR"
