"""bench/train_step.py's subprocess: time one training step built from scratch, or the machine's matmul.
The steps (all on the same random frozen GPT-1-sized embeddings, dropout 0):

project      : the project's step as a run takes it, at --precision auto (what users get here);
project-fp32 : the same step forced to fp32;
course       : the course notebook's plain step: log_softmax over (B, T, V), a loss that expands the
               mask and a one-hot to (B, T, V), AdamW over model.parameters(), reference attention;
hf           : Hugging Face OpenAIGPTLMHeadModel from a config (no download), frozen tied
               embeddings, F.cross_entropy on its (B, T, V) logits.
"""
import resource
import time

import torch
import torch.nn.functional as F

from bench.common import LR, VOCAB, WEIGHT_DECAY, WIDTH, frozen_embeddings, project_model, project_step, random_batch
from utils.memory import peak_rss_mb
from utils.models.losses import course_loss
from utils.torch_utils import cpu_model_name

HEADS, LSTM_HIDDEN = 12, 512


def run_worker(args):
    """The result dict of variant args.worker ("matmul": the machine's fp32 and bf16 matmul rates)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker == "matmul":
        return {"fp32_gflops": matmul_gflops(torch.float32), "bf16_gflops": matmul_gflops(torch.bfloat16),
                "torch": torch.__version__, "cpu": cpu_model_name(), "threads": torch.get_num_threads()}
    torch.manual_seed(0)
    step = build(args.worker, args.seq_len, args.layers, compile_features=args.compile)
    batch = random_batch(args.batch_size, args.seq_len)
    base_mb, reset = resident_mb(), reset_peak_rss()
    for _ in range(args.warmup):
        step(batch)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step(batch)
        times.append(time.perf_counter() - start)
    if not torch.isfinite(loss.detach()):
        raise RuntimeError(f"{args.worker}: non-finite loss {loss.item()}")
    return {"step_seconds": times, "precision": getattr(step, "precision", "fp32"), "peak_mb": peak_rss_mb(),
            "base_mb": base_mb, "peak_reset": reset, "loss": float(loss), "threads": torch.get_num_threads(),
            "step_flops": step_flops(args.worker, args.batch_size, args.seq_len, args.layers)}


def build(variant, seq_len, layers=1, compile_features=False):
    """-> step(batch), one full optimisation step of `variant` (e.g. "lstm-project", "gpt1-hf")."""
    model_name, kind = variant.split("-", 1)
    if kind == "hf":
        return _hf_step(seq_len, layers)
    model = project_model(model_name, layers, seq_len)
    if kind.startswith("project"):
        if compile_features:  # TokenNLL calls sequence_features, so that is what to compile
            model.sequence_features = torch.compile(model.sequence_features)
        return project_step(model, "adamw", "fp32" if kind == "project-fp32" else "auto")
    if not model.recurrent:
        model.set_fused_attention(False)  # the course's reference attention path
    return _plain_step(model, model.parameters(), lambda batch: course_style_loss(model, batch))


def course_style_loss(model, batch):
    """The typical course solution: one-hot targets and the mask both expanded to (B, T, V)."""
    x, mask = batch["source"], batch["mask"]
    log_probas = model(x, model.initial_states(x.shape[0]))[0] if model.recurrent else model(x)
    one_hot = F.one_hot(batch["target"], log_probas.shape[-1])  # (B, T, V)
    picked = log_probas * one_hot * mask[..., None]  # (B, T, V)
    return (-picked.sum(dim=(1, 2)) / mask.sum(dim=1)).mean()


def _plain_step(model, parameters, loss_of):
    optimizer = torch.optim.AdamW(parameters, lr=LR, weight_decay=WEIGHT_DECAY)
    model.train()

    def step(batch):
        loss = loss_of(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def _hf_step(seq_len, layers):
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    config = OpenAIGPTConfig(vocab_size=VOCAB, n_positions=seq_len, n_embd=WIDTH, n_layer=layers, n_head=HEADS,
                             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
    model = OpenAIGPTLMHeadModel(config)
    assert model.lm_head.weight is model.transformer.tokens_embed.weight, "HF head is not tied"
    embeddings = (model.transformer.tokens_embed, model.transformer.positions_embed)
    for table, rows in zip(embeddings, frozen_embeddings(seq_len)):
        with torch.no_grad():
            table.weight.copy_(rows)
        table.requires_grad_(False)

    def loss_of(batch):
        logits = model(input_ids=batch["source"]).logits  # (B, T, V)
        nll = F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten(), reduction="none")
        return course_loss(nll.view_as(batch["mask"]), batch["mask"])

    return _plain_step(model, [p for p in model.parameters() if p.requires_grad], loss_of)


def step_flops(variant, batch_size, seq_len, layers=1, vocab=VOCAB, width=WIDTH):
    """Matmul FLOPs of one training step: the frozen tied classifier's forward and input gradient
    (2 x 2*N*E*V) plus the body's matmuls x3 (forward, input and weight gradients)."""
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


def matmul_gflops(dtype, rows=2048, inner=768, cols=8192, repeats=3):
    """Best rate of x @ w.T and w @ x.T (the classifier's shapes scaled down, both output layouts)."""
    if dtype != torch.float32:
        rows, cols = rows // 8, cols // 8  # emulated bf16 on AVX2 runs at a few % of fp32: keep it short
    x, w = torch.randn(rows, inner, dtype=dtype), torch.randn(cols, inner, dtype=dtype)
    best = float("inf")
    for product in (lambda: x @ w.t(), lambda: w @ x.t()):
        product()  # warm-up (thread pool, packing buffers)
        for _ in range(repeats):
            start = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - start)
    return 2 * rows * inner * cols / best / 1e9


def reset_peak_rss():
    """Reset the RSS high-water mark (clear_refs '5'): ru_maxrss then measures the steps; False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def resident_mb():
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")
