"""Sampling continuations from the LSTM or MiniGPT1 (any size): the core of generate.py and of report samples.

    ids = generate(model, prompt_ids, 100, temperature=0.8, top_k=40, generator=torch.Generator())

The LSTM (`model.recurrent`) is fed the prompt once, then one token at a time carrying (h, c);
MiniGPT1 is re-run on the last `model.sequence_length` tokens (a sliding window). Sampling runs on
the CPU in float64 with a CPU `generator`: a seed gives the same tokens on any device.
"""
import torch

from utils.data.tokenizer import PADDING_ID

def filter_distribution(log_probas, temperature, top_k=None, banned=(PADDING_ID,)):
    """(V,) log-probabilities -> (V,) float64 CPU scores for sampling: banned ids (padding) at -inf,
    divided by temperature, and all but the top_k highest at -inf (top_k None or 0: keep all)."""
    scores = log_probas.detach().to("cpu", torch.float64).clone()
    scores[list(banned)] = float("-inf")
    if top_k:
        kept = torch.topk(scores, min(int(top_k), scores.numel())).indices
        filtered = torch.full_like(scores, float("-inf"))
        filtered[kept] = scores[kept]
        scores = filtered
    return scores / temperature if temperature > 0 else scores


def pick_next(log_probas, temperature, top_k=None, generator=None):
    """One token id from (V,) log-probabilities: argmax when temperature == 0 (padding excluded),
    else a draw from softmax(log_probas / temperature) restricted to the top_k ids."""
    scores = filter_distribution(log_probas, temperature, top_k)
    if temperature == 0:
        return int(torch.argmax(scores))
    probas = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probas, 1, generator=generator))


def _check(model, prompt_ids, max_new_tokens, temperature, top_k):
    if len(prompt_ids) == 0:
        raise ValueError("The prompt has no tokens.")
    size = model.vocabulary_size
    if min(prompt_ids) < 1 or max(prompt_ids) >= size:
        raise ValueError(f"Prompt ids must be in [1, {size}); got {min(prompt_ids)}..{max(prompt_ids)}.")
    if max_new_tokens < 0 or temperature < 0 or (top_k is not None and top_k < 0):
        raise ValueError("max_new_tokens, temperature and top_k must be >= 0.")


def _lstm_steps(model, prompt_ids, device):
    """Yield the next-token log-probabilities (V,); send() the chosen token to advance by one."""
    state = model.initial_states(1, device)
    inputs = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, P): the prompt, once
    while True:
        log_probas, state = model(inputs, state)  # (1, T, V)
        token = yield log_probas[0, -1]
        inputs = torch.tensor([[token]], dtype=torch.long, device=device)  # (1, 1)


def _gpt_steps(model, prompt_ids, device):
    """Same protocol; each step re-runs the model on the last sequence_length tokens."""
    context = list(prompt_ids)
    while True:
        window = torch.tensor([context[-model.sequence_length:]], dtype=torch.long, device=device)  # (1, <=S)
        token = yield model(window)[0, -1]
        context.append(token)


def log_proba_steps(model, prompt_ids):
    """A generator of next-token log-probabilities (V,): next() gives the prompt's, send(token) the
    one after appending token. Run it under torch.no_grad()."""
    device = next(model.parameters()).device
    return (_lstm_steps if model.recurrent else _gpt_steps)(model, [int(i) for i in prompt_ids], device)


def generate(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    """max_new_tokens new dataset ids continuing prompt_ids: temperature 0 is greedy, top_k None/0
    keeps all, generator a CPU torch.Generator (None: the global one). Call model.eval() first."""
    prompt_ids = [int(i) for i in prompt_ids]
    _check(model, prompt_ids, max_new_tokens, temperature, top_k)
    if max_new_tokens == 0:
        return []
    steps = log_proba_steps(model, prompt_ids)
    new_ids = []
    with torch.no_grad():
        log_probas = next(steps)
        for _ in range(max_new_tokens):
            new_ids.append(pick_next(log_probas, temperature, top_k, generator))
            if len(new_ids) < max_new_tokens:
                log_probas = steps.send(new_ids[-1])
    steps.close()
    return new_ids
