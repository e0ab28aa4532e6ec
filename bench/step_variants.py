"""The training steps bench/train_step.py compares, each built from scratch in its own process.

project      : the project's step as a run takes it (TokenNLL forward: exact chunked tied loss,
               fused attention; AdamW over learnable parameters only) at --precision auto, i.e.
               the precision users get on this machine;
project-fp32 : the same step forced to fp32 (equal to `project` where auto picks fp32);
course       : the course notebook's plain step: model(x) -> log_softmax over (B, T, V), a loss
               that expands the mask and a one-hot to (B, T, V), AdamW over model.parameters(),
               MiniGPT1's reference attention path;
hf           : Hugging Face OpenAIGPTLMHeadModel built from a config (no download), frozen tied
               embeddings, F.cross_entropy on its (B, T, V) logits.
All use the same random frozen GPT-1-sized embeddings (bench/common.py) and dropout 0.
"""
import torch
import torch.nn.functional as F

from bench.common import LR, VOCAB, WEIGHT_DECAY, WIDTH, frozen_embeddings, project_model, project_step
from utils.models.losses import course_loss

HEADS, LSTM_HIDDEN = 12, 512


def build(variant, seq_len, layers=1, compile_features=False):
    """-> step(batch) running one full optimisation step of `variant` (see bench.train_step's
    ALL_VARIANTS, e.g. "lstm-project", "gpt1-project-fp32", "gpt1-course", "gpt1-hf")."""
    model_name, kind = variant.split("-", 1)
    if kind == "hf":
        return _hf_step(seq_len, layers)
    model = project_model(model_name, layers, seq_len)
    if kind.startswith("project"):
        if compile_features:  # TokenNLL calls sequence_features, so that is what to compile
            model.sequence_features = torch.compile(model.sequence_features)
        return project_step(model, "adamw", "fp32" if kind == "project-fp32" else "auto")
    return _course_step(model)


def course_style_loss(log_probas, targets, mask):
    """The typical course solution: one-hot targets and the mask both expanded to (B, T, V)."""
    one_hot = F.one_hot(targets, log_probas.shape[-1])  # (B, T, V)
    picked = log_probas * one_hot * mask[..., None]  # (B, T, V)
    per_sequence = -picked.sum(dim=(1, 2)) / mask.sum(dim=1)
    return per_sequence.mean()


def _course_step(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    if not model.recurrent:
        model.set_fused_attention(False)  # the course's reference attention path
    model.train()

    def step(batch):
        x = batch["source"]
        log_probas = model(x, model.initial_states(x.shape[0]))[0] if model.recurrent else model(x)
        loss = course_style_loss(log_probas, batch["target"], batch["mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def _hf_step(seq_len, layers):
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    config = OpenAIGPTConfig(
        vocab_size=VOCAB, n_positions=seq_len, n_embd=WIDTH, n_layer=layers, n_head=HEADS,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
    )
    model = OpenAIGPTLMHeadModel(config)
    assert model.lm_head.weight is model.transformer.tokens_embed.weight, "HF head is not tied"
    tokens, position = frozen_embeddings(seq_len)
    with torch.no_grad():
        model.transformer.tokens_embed.weight.copy_(tokens)
        model.transformer.positions_embed.weight.copy_(position)
    model.transformer.tokens_embed.requires_grad_(False)
    model.transformer.positions_embed.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=WEIGHT_DECAY)
    model.train()

    def step(batch):
        logits = model(input_ids=batch["source"]).logits  # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten(), reduction="none")
        loss = course_loss(nll.view_as(batch["mask"]), batch["mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def step_flops(variant, batch_size, seq_len, layers=1, vocab=VOCAB, width=WIDTH):
    """Matmul FLOPs of one training step, counted analytically: the tied classifier's forward
    and input-gradient matmuls (2 x 2*N*E*V; no weight gradient, it is frozen) plus the
    body's matmuls x3 (forward, input gradient, weight gradient)."""
    n = batch_size * seq_len
    classifier = 2 * (2 * n * width * vocab)
    if variant.startswith("lstm"):
        inputs = [width] + [LSTM_HIDDEN] * (layers - 1)  # each layer's input width
        body = sum(2 * n * 4 * LSTM_HIDDEN * (w + LSTM_HIDDEN) for w in inputs)
        body += 2 * n * LSTM_HIDDEN * width  # Linear(H -> E)
    else:
        linears = 2 * n * 12 * width * width  # q, k, v, output (4 E^2) and the MLP (8 E^2)
        attention = 2 * 2 * n * seq_len * width  # Q K^T and weights @ V, full (not causal-halved)
        body = layers * (linears + attention)
    return classifier + 3 * body
