"""The training steps bench/train_step.py compares, each built from scratch in its own process.

project : the project's step (utils.training.train_step: exact chunked tied loss, fused
          attention, AdamW over learnable parameters only).
course  : the course notebook's plain step: model(x) -> log_softmax over (B, T, V), a loss
          that expands the mask and a one-hot to (B, T, V), AdamW over model.parameters(),
          MiniGPT1's reference attention path.
hf      : Hugging Face OpenAIGPTLMHeadModel built from a config (no download), frozen tied
          embeddings, F.cross_entropy on its (B, T, V) logits.
All use the same random frozen GPT-1-sized embeddings (V = 40,479, E = 768) at the scale of
utils/build_embeddings.py's stand-in (per-entry RMS 0.15), and dropout 0.
"""
import torch
import torch.nn.functional as F

from utils.losses import course_loss

VOCAB, WIDTH, HEADS, LSTM_HIDDEN = 40479, 768, 12, 512
LR, WEIGHT_DECAY = 1e-3, 5e-4  # the project's AdamW defaults (utils.run_args)
# nn.Embedding's N(0, 1) rows would give MiniGPT1 logits spread over hundreds, unlike GPT-1's
# embeddings; all variants get the same rows at the offline stand-in's scale instead.
EMBEDDING_RMS = 0.15


def frozen_embeddings(seq_len, seed=0):
    """(tokens (V, E) with row 0 zero for padding, positions (seq_len, E)), float32."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(VOCAB, WIDTH, generator=generator) * EMBEDDING_RMS
    tokens[0] = 0.0
    return tokens, torch.randn(seq_len, WIDTH, generator=generator) * EMBEDDING_RMS


def random_batch(batch_size, seq_len, seed=0):
    """Full-length sequences (mask all ones), as almost every Wikitext-2 training item is."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (batch_size, seq_len + 1), generator=generator)
    return {"source": tokens[:, :-1], "target": tokens[:, 1:], "mask": torch.ones(batch_size, seq_len)}


def build(variant, seq_len, layers=1, compile_features=False):
    """-> step(batch) running one full optimisation step of `variant` (see bench.train_step's
    ALL_VARIANTS: "lstm-project", "lstm-course", "gpt1-project", "gpt1-course", "gpt1-hf")."""
    model_name, kind = variant.split("-")
    if kind == "hf":
        return _hf_step(seq_len, layers)
    model = _project_model(model_name, seq_len, layers)
    if kind == "project":
        if compile_features:  # token_nll calls model.features, so that is what to compile
            model.features = torch.compile(model.features)
        return _project_step(model)
    return _course_step(model)


def _project_model(model_name, seq_len, layers):
    from gpt1_solution import MiniGPT1
    from lstm_solution import LSTM

    tokens, position = frozen_embeddings(seq_len)
    if model_name == "lstm":
        return LSTM(VOCAB, WIDTH, LSTM_HIDDEN, num_layers=layers, _embedding_weight=tokens)
    return MiniGPT1(VOCAB, WIDTH, seq_len, HEADS, num_layers=layers, _tokens_embedding_weight=tokens,
                    _positional_embedding_weight=position)


def _project_step(model):
    from run_exp import make_optimizer
    from utils.run_args import Arguments
    from utils.training import train_step

    optimizer = make_optimizer(Arguments(optimizer="adamw", lr=LR, weight_decay=WEIGHT_DECAY), model)
    model.train()
    return lambda batch: train_step(model, batch, optimizer)[0]


def course_style_loss(log_probas, targets, mask):
    """The typical course solution: one-hot targets and the mask both expanded to (B, T, V)."""
    one_hot = F.one_hot(targets, log_probas.shape[-1])  # (B, T, V)
    picked = log_probas * one_hot * mask[..., None]  # (B, T, V)
    per_sequence = -picked.sum(dim=(1, 2)) / mask.sum(dim=1)
    return per_sequence.mean()


def _course_step(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    if hasattr(model, "set_fused_attention"):
        model.set_fused_attention(False)
    model.train()

    def step(batch):
        x = batch["source"]
        if hasattr(model, "initial_states"):
            log_probas, _ = model(x, model.initial_states(x.shape[0]))
        else:
            log_probas = model(x)
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


def step_flops(variant, batch_size, seq_len, layers=1):
    """Matmul FLOPs of one training step, counted analytically: the tied classifier's forward
    and input-gradient matmuls (2 x 2*N*E*V; no weight gradient, it is frozen) plus the
    body's matmuls x3 (forward, input gradient, weight gradient)."""
    n = batch_size * seq_len
    classifier = 2 * (2 * n * WIDTH * VOCAB)
    if variant.startswith("lstm"):
        inputs = [WIDTH] + [LSTM_HIDDEN] * (layers - 1)  # each layer's input width
        body = sum(2 * n * 4 * LSTM_HIDDEN * (width + LSTM_HIDDEN) for width in inputs)
        body += 2 * n * LSTM_HIDDEN * WIDTH  # Linear(H -> E)
    else:
        linears = 2 * n * 12 * WIDTH * WIDTH  # q, k, v, output (4 E^2) and the MLP (8 E^2)
        attention = 2 * 2 * n * seq_len * WIDTH  # Q K^T and weights @ V, full (not causal-halved)
        body = layers * (linears + attention)
    return classifier + 3 * body
