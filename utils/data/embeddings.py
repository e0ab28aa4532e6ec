"""Frozen GPT-1 token + position embeddings, and loading them from `embeddings.npz`."""
import hashlib
import os
import shlex
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.models.losses import cast_weight

GPT1_VOCABULARY_SIZE = 40479
GPT1_EMBEDDING_SIZE = 768
# dl=1: the file itself (the course's dl=0 link downloads Dropbox's HTML preview page).
EMBEDDINGS_URL = "https://www.dropbox.com/s/g91502hubcmb4ob/embeddings.npz?dl=1"
BUILD_COMMAND = "python -m utils.build_embeddings --out data/embeddings.npz"


def file_sha256(path):
    """Hex sha256 of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class EmbeddingsError(ValueError):
    """An embeddings file that is missing or has the wrong content; the message says what to do."""


def missing_embeddings_message(filename):
    return (
        f"Embeddings file {filename} not found: download the GPT-1 embeddings.npz ({EMBEDDINGS_URL}) "
        f"where there is a network, or build one offline with `{BUILD_COMMAND}`, then pass --embeddings PATH."
    )


def rebuild_command(filename):
    """The build command that replaces an existing, unusable `filename` (build_embeddings refuses to overwrite)."""
    return f"python -m utils.build_embeddings --out {shlex.quote(filename)} --force"


def not_embeddings_message(filename, why):
    """One line for a file that exists but is no embeddings .npz; never suggests an unsafe pickle load."""
    return (f"{filename} is not an .npz of embeddings ({why}): pass the GPT-1 embeddings.npz "
            f"(arrays 'tokens' (V, E) and 'position' (P, E)) or build one over it with `{rebuild_command(filename)}`.")


def _is_web_page(filename):
    with open(filename, "rb") as handle:
        return handle.read(512).lstrip().lower().startswith((b"<!doctype html", b"<html"))


def _read_arrays(filename):
    """(tokens, position) numpy arrays of an .npz, or EmbeddingsError; object arrays are refused unread."""
    if _is_web_page(filename):
        raise EmbeddingsError(f"{filename} is a web page, not the embeddings: download with dl=1 ({EMBEDDINGS_URL}), "
                              f"or build a stand-in over it with `{rebuild_command(filename)}`.")
    if not zipfile.is_zipfile(filename):  # text, a .npy, a pickle: numpy's own error would advise allow_pickle
        raise EmbeddingsError(not_embeddings_message(filename, "not a NumPy .npz archive"))
    try:
        with np.load(filename, allow_pickle=False) as data:
            missing = [name for name in ("tokens", "position") if name not in data.files]
            if missing:
                raise EmbeddingsError(not_embeddings_message(filename, f"no array {' or '.join(map(repr, missing))}"))
            tokens, position = data["tokens"], data["position"]
    except ValueError as err:
        if isinstance(err, EmbeddingsError):
            raise
        raise EmbeddingsError(not_embeddings_message(filename, "its arrays are not plain numbers")) from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise EmbeddingsError(not_embeddings_message(filename, f"unreadable: {err}")) from None
    if not all(np.issubdtype(a.dtype, np.number) for a in (tokens, position)):
        raise EmbeddingsError(not_embeddings_message(filename, "its arrays are not plain numbers"))
    return tokens, position


def read_embeddings(filename, vocabulary_size=None, embedding_size=None):
    """Return (tokens (V, E), position (P, E)) float32 tensors, checked for the expected shapes."""
    if not os.path.isfile(filename):
        raise EmbeddingsError(missing_embeddings_message(filename))
    tokens, position = _read_arrays(filename)
    if tokens.ndim != 2 or position.ndim != 2 or tokens.shape[1] != position.shape[1]:
        raise EmbeddingsError(
            f"{filename} has tokens {tokens.shape} and position {position.shape}: expected (V, E) and (P, E)."
        )
    expected = (vocabulary_size or tokens.shape[0], embedding_size or tokens.shape[1])
    if tokens.shape != expected:
        raise EmbeddingsError(f"{filename} has token embeddings of shape {tokens.shape}, expected {expected}.")
    for name, table in (("tokens", tokens), ("position", position)):
        bad = int(np.size(table) - np.isfinite(table).sum())
        if bad:
            raise EmbeddingsError(f"{filename}: '{name}' holds {bad} NaN or infinite value(s); rebuild or re-download it.")
    return torch.from_numpy(np.asarray(tokens, np.float32)), torch.from_numpy(np.asarray(position, np.float32))


class GPT1Embedding(nn.Module):
    """Sum of token and learned-position embeddings; token row 0 is padding."""

    def __init__(
        self,
        vocabulary_size,
        embedding_size,
        sequence_length,
        _tokens_embedding_weight=None,
        _positional_embedding_weight=None,
    ):
        super().__init__()
        self.vocabulary_size, self.sequence_length = vocabulary_size, sequence_length
        self.tokens = nn.Embedding(vocabulary_size, embedding_size, padding_idx=0, _weight=_tokens_embedding_weight)
        self.position = nn.Embedding(sequence_length, embedding_size, _weight=_positional_embedding_weight)

    def forward(self, tokens, positions):
        _check_range(tokens, self.vocabulary_size, "token id")
        _check_range(positions, self.sequence_length, "position")
        return self.tokens(tokens) + self.position(positions)

    def sequences(self, tokens):
        """tokens (B, T) -> embeddings at positions 0..T-1 (B, T, E), the (T, E) positions broadcast."""
        T = tokens.shape[1]
        if T > self.sequence_length:
            raise IndexError(f"position out of range: {T} positions, the model has {self.sequence_length}.")
        _check_range(tokens, self.vocabulary_size, "token id")
        table, position = self.tokens.weight, self.position.weight[:T]
        dtype = evaluation_half_dtype(tokens.device.type)
        if dtype is not None:
            # Evaluating under autocast (half residual stream): rows of the tied loss's half copy.
            table, position = cast_weight(table, dtype), position.to(dtype)
        return F.embedding(tokens, table, self.tokens.padding_idx) + position  # (B, T, E) + (T, E)

    @classmethod
    def load_embeddings_from(cls, filename):
        tokens, position = read_embeddings(filename)
        return cls(tokens.shape[0], tokens.shape[1], position.shape[0], tokens, position)


def evaluation_half_dtype(device):
    """The autocast dtype when evaluating under autocast (no gradient recorded), else None: where
    MiniGPT1's residual stream stays half (gpt1_solution.LayerNorm, GPT1Embedding.sequences)."""
    if torch.is_autocast_enabled(device) and not torch.is_grad_enabled():
        return torch.get_autocast_dtype(device)
    return None


def _check_range(ids, size, what):
    """Refuse ids outside [0, size) with a clear error; on CUDA without a host sync."""
    if ids.is_cuda:
        torch._assert_async(((ids >= 0) & (ids < size)).all(), f"{what} out of range [0, {size})")
        return
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
        raise IndexError(f"{what} out of range: got values in [{int(ids.min())}, {int(ids.max())}], allowed [0, {size}).")
