"""Exact language-model losses that never build a (B, T, V) log-probability tensor.

`tied_token_nll` computes the per-token NLL chunk by chunk: peak memory holds one (chunk, V) block.
Token i's NLL depends on feature row i alone, so its gradient (softmax - onehot) @ W is computed
in the same pass and scaled in backward by the upstream gradient: exact, no second vocabulary
pass. Each chunk makes as few (n, V) passes as aten allows (_Chunk). CPU timings:
docs/performance.md#where-the-time-goes.
"""
import torch

# Tokens per chunk; on a CPU 1024 was the fastest measured (docs/performance.md#where-the-time-goes).
DEFAULT_CHUNK = {"cpu": 1024, "cuda": 8192}


class _TiedNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, weight, targets, chunk_size, compute_dtype):
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        kernel = _Chunk(weight, compute_dtype)
        nll = torch.empty(features.shape[0], dtype=kernel.out_dtype, device=features.device)
        # The gradient rows in the compute dtype: the second matmul writes them, no copy.
        grad_rows = features.new_empty(features.shape, dtype=compute_dtype) if (want_x and not want_w) else None
        for rows, x, t in _chunks(features, targets, chunk_size, compute_dtype):
            nll[rows] = kernel.nll(x, t, None if grad_rows is None else grad_rows[rows])
        ctx.chunk_size, ctx.compute_dtype, ctx.features_dtype = chunk_size, compute_dtype, features.dtype
        ctx.save_for_backward(grad_rows if grad_rows is not None else features, weight, targets)
        ctx.precomputed = grad_rows is not None
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        saved, weight, targets = ctx.saved_tensors
        if ctx.precomputed:  # scaled in grad_nll's dtype (float32 at least): fp16 cannot overflow here
            return (saved * grad_nll[:, None]).to(ctx.features_dtype), None, None, None, None
        # Weight needs a gradient too (learn_embeddings): recompute chunk by chunk.
        features = saved
        kernel = _Chunk(weight, ctx.compute_dtype)
        grad_x = torch.empty_like(features) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(weight, dtype=kernel.out_dtype)
        for rows, x, t in _chunks(features, targets, ctx.chunk_size, ctx.compute_dtype):
            kernel.backward(x, t, grad_nll[rows], None if grad_x is None else grad_x[rows], grad_w)
        return grad_x, grad_w.to(weight.dtype), None, None, None


class _Chunk:
    """One chunk's loss in fewer (n, V) passes than mm + F.cross_entropy: one matmul, one softmax
    (float32 accumulation), the one-hot subtracted at n entries, the second matmul. bf16: the NLL is
    -log p_t from the softmax (bf16 has float32's range; 8 nV bytes against cross-entropy's 16 nV).
    fp16's p_t would underflow below 6e-8: the NLL comes from the row's largest probability (10 nV).
    Evaluation: log_softmax, one pass (6 nV). Exact in float32/float64; the softmax is normalised
    before the second matmul, so fp16 cannot overflow there."""

    def __init__(self, weight, compute_dtype):
        self.weight_c, self.compute_dtype = cast_weight(weight, compute_dtype), compute_dtype
        self.out_dtype = torch.promote_types(compute_dtype, torch.float32)

    def _softmax(self, x, t, want_probs=True):
        """(softmax (n, V) in the compute dtype, or None when not wanted; nll (n,))."""
        logits = x @ self.weight_c.t()  # (n, V) in the compute dtype
        half = self.compute_dtype in (torch.float16, torch.bfloat16)
        if half and (want_probs or self.compute_dtype == torch.bfloat16):
            probs = torch.softmax(logits, dim=1)
            if self.compute_dtype == torch.bfloat16:
                p_t = probs.gather(1, t[:, None]).squeeze(1).to(self.out_dtype)
                return probs, -p_t.clamp(min=torch.finfo(torch.bfloat16).tiny).log()
            # fp16: log p_j = logit_j - lse for every j; at the row's most likely j, p_j >= 1/V never
            # underflows, so lse = logit_j - log p_j, and nll = lse - logit_t (one read pass, not two).
            p_top, top = probs.max(dim=1)
            picked = logits.gather(1, torch.stack((top, t), 1)).to(self.out_dtype)  # (n, 2): logit_j, logit_t
            return probs, picked[:, 0] - picked[:, 1] - p_top.to(self.out_dtype).log()
        log_p = torch.log_softmax(logits, dim=1)
        nll = -log_p.gather(1, t[:, None]).squeeze(1).to(self.out_dtype)
        return (log_p.exp_() if want_probs else None), nll

    @staticmethod
    def _minus_onehot(probs, t):
        flat = probs.view(-1)  # (n * V,): n entries touched (scatter_add_ on a CPU copies all of bf16 probs)
        at = torch.arange(len(t), device=t.device) * probs.shape[1] + t
        flat[at] = flat[at] - 1.0
        return probs

    def nll(self, x, t, grad_out=None):
        probs, nll = self._softmax(x, t, want_probs=grad_out is not None)
        if grad_out is not None:
            _mm_into(self._minus_onehot(probs, t), self.weight_c, grad_out)
        return nll

    def backward(self, x, t, upstream, grad_x, grad_w):
        probs, _ = self._softmax(x, t)
        g = self._minus_onehot(probs, t).mul_(upstream[:, None].to(probs.dtype))  # (n, V)
        if grad_x is not None:
            _mm_into(g, self.weight_c, grad_x)
        if g.dtype == grad_w.dtype:
            grad_w.addmm_(g.t(), x)
        else:
            grad_w += (g.t() @ x).to(grad_w.dtype)


# The tied table's compute-dtype copy: a frozen table is cast once; a learnt table's in-place
# update bumps its version, which recasts it.
_CASTS = torch.utils.weak.WeakIdKeyDictionary()


def cast_weight(weight, dtype):
    """weight in dtype, cached while weight is unchanged."""
    if weight.dtype == dtype:
        return weight
    key = (weight._version, dtype)
    cached = _CASTS.get(weight)
    if cached is None or cached[0] != key:
        cached = _CASTS[weight] = (key, weight.detach().to(dtype))
    return cached[1]


def _chunks(features, targets, chunk_size, compute_dtype):
    for start in range(0, features.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        yield rows, features[rows].to(compute_dtype), targets[rows]


def _mm_into(a, b, out):
    """out <- a @ b, written in place when the dtypes allow (no temporary)."""
    if a.dtype == b.dtype == out.dtype:
        torch.mm(a, b, out=out)
    else:
        out.copy_(a @ b)


def tied_token_nll(features, weight, targets, chunk_size=None, compute_dtype=None):
    """features (N, E), weight (V, E), targets (N,) -> NLL (N,) float32 (float64 in float64)."""
    device_type = features.device.type
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK.get(device_type, 1024)
    if compute_dtype is None:
        compute_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else features.dtype
    with torch.autocast(device_type, enabled=False):
        if torch.is_grad_enabled() and (features.requires_grad or weight.requires_grad):
            return _TiedNLL.apply(features, weight, targets, chunk_size, compute_dtype)
        return _nll_only(features, weight, targets, chunk_size, compute_dtype)


@torch.no_grad()
def _nll_only(features, weight, targets, chunk_size, compute_dtype):
    kernel = _Chunk(weight, compute_dtype)
    nll = torch.empty(features.shape[0], dtype=kernel.out_dtype, device=features.device)
    for rows, x, t in _chunks(features, targets, chunk_size, compute_dtype):
        nll[rows] = kernel.nll(x, t)
    return nll


def course_loss(token_nll, mask):
    """The course's loss from NLL (B, T) and mask (B, T): mean over sequences of their mean NLL."""
    per_sequence = (token_nll * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return per_sequence.mean()


def nll_from_log_probas(log_probas, targets):
    """Per-token NLL (B, T) picked from log-probabilities (B, T, V)."""
    return -log_probas.gather(2, targets.unsqueeze(2)).squeeze(2)
