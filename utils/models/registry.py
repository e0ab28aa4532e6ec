"""Models by name: how the engine builds each and what it needs from the embeddings file. A third
model is its own file (a TiedLanguageModel) plus one MODELS entry. No torch at import (the report
reads display names here).
"""
from dataclasses import dataclass
from typing import Callable

LSTM_HIDDEN_SIZE = 512  # the assignment's LSTM width
GPT1_HEADS = 12  # GPT-1's attention heads


@dataclass(frozen=True)
class ModelSpec:
    display_name: str  # in tables, legends and progress lines
    build: Callable  # (settings, tokens (V, E), position (P, E)) -> TiedLanguageModel; reads the fields it needs
    check: Callable = lambda tokens_shape, position_shape, item_length: None  # -> a problem to report, or None


def _build_lstm(s, tokens, position):
    from lstm_solution import LSTM

    model = LSTM(tokens.shape[0], tokens.shape[1], LSTM_HIDDEN_SIZE, s.layers, s.learn_embeddings, tokens,
                 dropout=s.dropout)
    # --init stable: the top layer's first output varies with the input at every depth (LSTM.start_orthogonal).
    return model.start_orthogonal() if s.init == "stable" else model


def _build_gpt1(s, tokens, position):
    from gpt1_solution import MiniGPT1

    # As the course skeleton's load_embeddings_from: one position per row of the file.
    model = MiniGPT1(tokens.shape[0], tokens.shape[1], position.shape[0], GPT1_HEADS, s.layers, s.learn_embeddings,
                     tokens, position, dropout=s.dropout)
    # --init stable: the first logits are uniform at every depth (MiniGPT1.start_uniform says why).
    return model.start_uniform() if s.init == "stable" else model


def _check_gpt1(tokens_shape, position_shape, item_length):
    if position_shape[0] < item_length:
        return f"MiniGPT1 needs >= {item_length} position rows for items of {item_length} tokens (got {position_shape[0]})"
    if tokens_shape[1] % GPT1_HEADS:
        return f"MiniGPT1's width must divide into {GPT1_HEADS} heads (got {tokens_shape[1]})"
    return None


MODELS = {
    "lstm": ModelSpec("LSTM", _build_lstm),  # any (V, E) table works; positions are not used
    "gpt1": ModelSpec("MiniGPT1", _build_gpt1, _check_gpt1),
}


def model_spec(name):
    """The spec of model `name`; KeyError naming the choices."""
    if name not in MODELS:
        raise KeyError(f"Unknown model {name!r}: use {' or '.join(MODELS)}.")
    return MODELS[name]


def display_name(name):
    return MODELS[name].display_name if name in MODELS else str(name)
