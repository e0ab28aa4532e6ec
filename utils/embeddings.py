"""Old path of the embeddings, kept for the course notebook: see utils.data.embeddings."""
from utils.data.embeddings import EMBEDDINGS_URL, EmbeddingsError, GPT1Embedding, read_embeddings  # noqa: F401
