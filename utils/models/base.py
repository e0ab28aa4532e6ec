"""What the assignment's two models share (a tied classifier, the course's loss), and TokenNLL,
the module training calls: wrapping it in DistributedDataParallel is all data parallelism needs.
"""
import torch.nn as nn

from utils.models.losses import course_loss, nll_from_log_probas, tied_token_nll


class TiedLanguageModel(nn.Module):
    """Subclasses define `embedding` (every table), `tied_weight`, `sequence_features`; then `_tie`."""

    recurrent = False  # True: the model carries a state between calls (generation feeds one token at a time)
    recurrence_precision = None  # what a recurrence runs in under any autocast ("fp32"); None: no recurrence

    @property
    def tied_weight(self):
        """The (V, E) matrix shared by the token embedding and the classifier."""
        raise NotImplementedError

    def sequence_features(self, inputs):
        """inputs (B, T) long -> pre-classifier features (B, T, E), from a fresh state."""
        raise NotImplementedError

    def _tie(self, classifier, learn_embeddings):
        """Share the token embedding with `classifier` (bias-free); tables frozen unless learn_embeddings."""
        classifier.weight = self.tied_weight
        self.embedding.requires_grad_(learn_embeddings)

    def loss(self, log_probas, targets, mask):
        """Per sequence, the mean NLL over its real (mask 1) targets; then the mean over the batch."""
        return course_loss(nll_from_log_probas(log_probas, targets), mask)

    def frozen_parameter_names(self):
        """state_dict names of frozen parameters, tied aliases included: what a checkpoint leaves out."""
        return sorted(n for n, p in self.named_parameters(remove_duplicate=False) if not p.requires_grad)


class TokenNLL(nn.Module):
    """forward(source (B, T), target (B, T)) -> per-token NLL (B, T), never building (B, T, V)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, source, target):
        features = self.model.sequence_features(source)  # (B, T, E)
        B, T, E = features.shape
        nll = tied_token_nll(features.reshape(B * T, E), self.model.tied_weight, target.reshape(B * T))  # (B*T,)
        return nll.view(B, T)
