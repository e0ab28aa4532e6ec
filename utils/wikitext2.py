"""Old path of the dataset, kept for the course notebook: see utils.data.wikitext2."""
from utils.data.wikitext2 import Wikitext2  # noqa: F401
