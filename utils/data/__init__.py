"""Data: the course's Wikitext-2 splits, batches, GPT-1 BPE, embeddings, your own corpus."""
import os

# The project's committed copy of the course's inputs (see data/README.md).
PROJECT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data")
BPE_FOLDER = os.path.join(PROJECT_DATA, "gpt1_bpe")
