"""Exact language-model losses that never build a (B, T, V) log-probability tensor.

The tied classifier (V = 40,479 rows) dominates a step. `tied_token_nll` computes the
per-token negative log-likelihood chunk by chunk, so peak memory holds one
(chunk, V) block instead of (B*T, V) logits, log-probabilities and an expanded mask.
Because token i's NLL depends on feature row i alone, its gradient with respect to that
row, (softmax - onehot) @ W, is computed in the same pass and scaled in backward by the
upstream gradient: exact, and no second pass over the vocabulary.
"""
import torch

DEFAULT_CHUNK = {"cpu": 1024, "cuda": 8192}


class _TiedNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, weight, targets, chunk_size, compute_dtype):
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        weight_c = weight.to(compute_dtype)
        nll = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)
        grad_rows = torch.empty_like(features) if (want_x and not want_w) else None
        for start in range(0, features.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            logits = (features[rows].to(compute_dtype) @ weight_c.t()).float()  # (n, V)
            lse = torch.logsumexp(logits, dim=-1)  # (n,)
            nll[rows] = lse - logits.gather(1, targets[rows, None]).squeeze(1)
            if grad_rows is not None:
                grad_rows[rows] = (_softmax_minus_onehot(logits, lse, targets[rows]).to(compute_dtype) @ weight_c).to(
                    features.dtype
                )
        ctx.chunk_size, ctx.compute_dtype = chunk_size, compute_dtype
        ctx.save_for_backward(grad_rows if grad_rows is not None else features, weight, targets)
        ctx.precomputed = grad_rows is not None
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        saved, weight, targets = ctx.saved_tensors
        if ctx.precomputed:
            return saved * grad_nll[:, None].to(saved.dtype), None, None, None, None
        # Weight needs a gradient too (learn_embeddings): recompute chunk by chunk.
        features, dtype = saved, ctx.compute_dtype
        weight_c = weight.to(dtype)
        grad_x = torch.empty_like(features) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32)
        for start in range(0, features.shape[0], ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            x = features[rows].to(dtype)
            logits = (x @ weight_c.t()).float()  # (n, V)
            lse = torch.logsumexp(logits, dim=-1)
            g = (_softmax_minus_onehot(logits, lse, targets[rows]) * grad_nll[rows, None]).to(dtype)  # (n, V)
            if grad_x is not None:
                grad_x[rows] = (g @ weight_c).to(features.dtype)
            grad_w += (g.t() @ x).float()
        return grad_x, grad_w.to(weight.dtype), None, None, None


def _softmax_minus_onehot(logits, lse, targets):
    probs = torch.exp(logits - lse[:, None])  # (n, V)
    probs[torch.arange(len(targets), device=probs.device), targets] -= 1.0
    return probs


def tied_token_nll(features, weight, targets, chunk_size=None, compute_dtype=None):
    """Per-token NLL of `targets` under softmax(features @ weight.T), float32.

    features (N, E), weight (V, E), targets (N,) long -> (N,). Under autocast the matmuls run
    in the autocast dtype; the log-sum-exp is always float32.
    """
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK.get(features.device.type, 1024)
    if compute_dtype is None:
        compute_dtype = torch.get_autocast_dtype(features.device.type) if torch.is_autocast_enabled(
            features.device.type
        ) else features.dtype
    with torch.autocast(features.device.type, enabled=False):
        if torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad):
            return _TiedNLL.apply(features, weight, targets, chunk_size, compute_dtype)
        return _nll_only(features, weight, targets, chunk_size, compute_dtype)


@torch.no_grad()
def _nll_only(features, weight, targets, chunk_size, compute_dtype):
    weight_c = weight.to(compute_dtype)
    nll = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)
    for start in range(0, features.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        logits = (features[rows].to(compute_dtype) @ weight_c.t()).float()  # (n, V)
        nll[rows] = torch.logsumexp(logits, dim=-1) - logits.gather(1, targets[rows, None]).squeeze(1)
    return nll


def course_loss(token_nll, mask):
    """The course's loss from per-token NLL (B, T) and mask (B, T): each sequence's mean
    NLL over its real targets, then the mean over sequences."""
    per_sequence = (token_nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_sequence.mean()


def nll_from_log_probas(log_probas, targets):
    """Per-token NLL (B, T) picked from log-probabilities (B, T, V)."""
    return -log_probas.gather(2, targets.unsqueeze(2)).squeeze(2)
