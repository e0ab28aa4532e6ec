"""The assignment's MiniGPT1: a post-norm GPT-1 Transformer over frozen GPT-1 embeddings."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.data.embeddings import GPT1Embedding, evaluation_half_dtype, read_embeddings
from utils.models.base import TiedLanguageModel


def _at_least_float32(dtype):
    """float32 for half precisions, but float64 stays float64 (no silent downcast)."""
    return torch.promote_types(dtype, torch.float32)


def _autocast_input(tensor):
    """tensor in the autocast dtype where autocast is on (what each nn.Linear would cast it to)."""
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type) and tensor.dtype == torch.float32:  # as autocast: not float64
        return tensor.to(torch.get_autocast_dtype(device_type))
    return tensor


class LayerNorm(nn.Module):
    """Layer normalisation with the biased variance. use_fused=False runs the assignment's formula
    from primitives; by default F.layer_norm computes the same in one kernel (proven equal in tests)."""

    def __init__(self, hidden_size, eps=1e-5, use_fused=True):
        super().__init__()
        self.hidden_size, self.eps, self.use_fused = hidden_size, eps, use_fused
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, inputs):
        device = inputs.device.type
        # Evaluating under autocast the residual stream stays half (statistics in float32). Not in
        # training: post-norm LayerNorm's backward turns half rounding into 5-10x larger errors (bf16).
        half = evaluation_half_dtype(device) if self.use_fused else None
        # Statistics in float32 at least: half-precision variance loses digits.
        x = inputs.to(half or _at_least_float32(inputs.dtype))
        if self.use_fused:
            with torch.autocast(device, enabled=False):  # autocast would upcast a half x
                weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
                normed = F.layer_norm(x, (self.hidden_size,), weight, bias, self.eps)
            return normed if half is not None else normed.to(inputs.dtype)
        mean = x.mean(dim=-1, keepdim=True)
        variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        normed = (x - mean) * torch.rsqrt(variance + self.eps)
        return (normed * self.weight + self.bias).to(inputs.dtype)


class MultiHeadedAttention(nn.Module):
    def __init__(self, head_size, num_heads, sequence_length, use_fused=True):
        super().__init__()
        self.head_size, self.num_heads, self.sequence_length = head_size, num_heads, sequence_length
        # Fused scaled_dot_product_attention is proven equal to the reference path in tests.
        self.use_fused = use_fused
        width = num_heads * head_size
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.output = nn.Linear(width, width)
        causal = torch.ones(sequence_length, sequence_length, dtype=torch.bool).tril()
        # Not persistent: it is rebuilt here, never saved, and DDP does not broadcast it at each step.
        self.register_buffer("causal_mask", causal, persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A state_dict saved with the mask as a persistent buffer (the course's skeleton keeps one)
        # still loads, strictly: the saved mask is the same lower triangle, so it is dropped.
        state_dict.pop(prefix + "causal_mask", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def get_attention_weights(self, queries, keys):
        """queries, keys (B, nh, T, hs) -> causal softmax(Q K^T / sqrt(hs)) (B, nh, T, T)."""
        T = queries.shape[-2]
        scores = queries @ keys.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, T)
        # -inf (not -1e4) so future positions get exactly zero weight in every dtype.
        scores = scores.to(_at_least_float32(scores.dtype)).masked_fill(~self.causal_mask[:T, :T], float("-inf"))
        return torch.softmax(scores, dim=-1).to(queries.dtype)

    def apply_attention(self, queries, keys, values):
        """queries, keys, values (B, nh, T, hs) -> attended values with heads merged (B, T, nh * hs)."""
        weights = self.get_attention_weights(queries, keys)  # (B, nh, T, T)
        return self.merge_heads(weights @ values)

    def split_heads(self, tensor):
        """(B, T, nh * d) -> (B, nh, T, d); head h owns columns [h*d, (h+1)*d)."""
        B, T, width = tensor.shape
        return tensor.view(B, T, self.num_heads, width // self.num_heads).transpose(1, 2)  # (B, nh, T, d)

    def merge_heads(self, tensor):
        """(B, nh, T, d) -> (B, T, nh * d), the inverse of split_heads."""
        B, nh, T, d = tensor.shape
        return tensor.transpose(1, 2).reshape(B, T, nh * d)  # (B, T, nh * d)

    def forward(self, hidden_states):
        """hidden_states (B, T, nh * hs) -> (B, T, nh * hs)."""
        hidden_states = _autocast_input(hidden_states)  # cast once for the three projections, not three times
        queries = self.split_heads(self.query(hidden_states))  # (B, nh, T, hs)
        keys = self.split_heads(self.key(hidden_states))  # (B, nh, T, hs)
        values = self.split_heads(self.value(hidden_states))  # (B, nh, T, hs)
        if self.use_fused:
            attended = F.scaled_dot_product_attention(queries, keys, values, is_causal=True)  # (B, nh, T, hs)
            attended = self.merge_heads(attended)
        else:
            attended = self.apply_attention(queries, keys, values)
        return self.output(attended)


class Block(nn.Module):
    """GPT-1 post-norm block: y = LN(x + attn(x)); out = LN(y + mlp(y))."""

    def __init__(self, head_size, mlp_hidden_size, num_heads, sequence_length, dropout=0.0):
        super().__init__()
        width = head_size * num_heads
        # on each residual branch, as GPT-1; 0 (the course's): no module, the block unchanged
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.attention = MultiHeadedAttention(head_size, num_heads, sequence_length)
        self.layer_norm_1 = LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_hidden_size), nn.GELU(), nn.Linear(mlp_hidden_size, width))
        self.layer_norm_2 = LayerNorm(width)

    def forward(self, hidden_states):
        attended = self.layer_norm_1(hidden_states + self.dropout(self.attention(hidden_states)))
        return self.layer_norm_2(attended + self.dropout(self.mlp(attended)))


class MiniGPT1(TiedLanguageModel):
    def __init__(
        self,
        vocabulary_size=40479,
        embedding_size=768,
        sequence_length=256,
        num_heads=12,
        num_layers=4,
        learn_embeddings=False,
        _tokens_embedding_weight=None,
        _positional_embedding_weight=None,
        dropout=0.0,
    ):
        super().__init__()
        self.vocabulary_size, self.embedding_size = vocabulary_size, embedding_size
        self.sequence_length, self.num_heads, self.num_layers = sequence_length, num_heads, num_layers
        self.learn_embeddings = learn_embeddings

        self.embedding = GPT1Embedding(
            vocabulary_size, embedding_size, sequence_length, _tokens_embedding_weight, _positional_embedding_weight
        )
        self.layers = nn.ModuleList(
            [Block(embedding_size // num_heads, 4 * embedding_size, num_heads, sequence_length, dropout)
             for _ in range(num_layers)]
        )
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()  # on the embeddings
        self.classifier = nn.Linear(embedding_size, vocabulary_size, bias=False)
        self._tie(self.classifier, learn_embeddings)  # token and position tables frozen unless asked

    @property
    def tied_weight(self):
        """The (V, E) matrix shared by the token embedding and the classifier."""
        return self.embedding.tokens.weight

    def start_uniform(self):
        """Zero the gain of the last LayerNorm: the first logits are 0 (uniform) and their scale is
        learnt. With a gain of 1 the features start along the current token's row, logits reach
        sqrt(E) * |row| and Adam's first steps swing them to confidently wrong predictions
        (docs/results.md#first-steps). The engine calls this on every MiniGPT1 it builds
        (utils.models.registry); the constructor keeps the course's initialisation."""
        if len(self.layers):
            with torch.no_grad():
                self.layers[-1].layer_norm_2.weight.zero_()
        return self

    def set_fused_attention(self, enabled):
        for block in self.layers:
            block.attention.use_fused = enabled

    def set_fused_layer_norm(self, enabled):
        for block in self.layers:
            block.layer_norm_1.use_fused = block.layer_norm_2.use_fused = enabled

    def get_embeddings(self, inputs):
        """inputs (B, T) -> token + position embeddings (B, T, E)."""
        return self.embedding.sequences(inputs)  # = self.embedding(inputs, arange(T) for each row)

    def sequence_features(self, inputs):
        return self.features(inputs)

    def features(self, inputs):
        """Pre-classifier features (B, T, E), for the fast loss."""
        hidden_states = self.dropout(self.get_embeddings(inputs))  # half when evaluating under autocast
        for block in self.layers:
            hidden_states = block(hidden_states)
        return hidden_states

    def forward(self, inputs):
        """inputs (B, T) long -> log-probabilities (B, T, V); position t sees tokens <= t only."""
        return torch.log_softmax(self.classifier(self.features(inputs)), dim=-1)

    @classmethod
    def load_embeddings_from(cls, filename, num_heads=12, num_layers=4, learn_embeddings=False, sequence_length=None):
        """As the course skeleton: sequence_length defaults to the file's position rows (512 for GPT-1's);
        an input longer than the model's positions fails with a clear IndexError."""
        tokens, position = read_embeddings(filename)
        if sequence_length is None:
            sequence_length = position.shape[0]
        if position.shape[0] < sequence_length:
            raise ValueError(f"{filename} has {position.shape[0]} position rows; sequence_length={sequence_length} "
                             "needs at least that many.")
        vocabulary_size, embedding_size = tokens.shape
        return cls(
            vocabulary_size, embedding_size, sequence_length, num_heads, num_layers, learn_embeddings,
            tokens, position[:sequence_length].clone(),
        )
