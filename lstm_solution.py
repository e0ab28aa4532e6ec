"""The assignment's LSTM language model over frozen GPT-1 embeddings tied to its classifier."""
import torch
import torch.nn as nn

from utils.data.embeddings import read_embeddings
from utils.models.base import TiedLanguageModel


class LSTM(TiedLanguageModel):
    recurrent = True
    recurrence_precision = "fp32"  # under bf16 autocast and on CPUs; fp16 autocast runs it in fp16 (_recurrence)

    def __init__(
        self,
        vocabulary_size=40479,
        embedding_size=768,
        hidden_size=512,
        num_layers=1,
        learn_embeddings=False,
        _embedding_weight=None,
        dropout=0.0,
    ):
        super().__init__()
        self.vocabulary_size, self.embedding_size = vocabulary_size, embedding_size
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.learn_embeddings = learn_embeddings

        self.embedding = nn.Embedding(vocabulary_size, embedding_size, padding_idx=0, _weight=_embedding_weight)
        self.lstm = nn.LSTM(embedding_size, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)  # between layers
        # on the embeddings and the top layer's outputs; 0 (the course's): no module, the model unchanged
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Sequential(
            nn.Linear(hidden_size, embedding_size),
            nn.ReLU(),
            nn.Linear(embedding_size, vocabulary_size, bias=False),
        )
        self._tie(self.classifier[2], learn_embeddings)

    def start_orthogonal(self, forget_bias=1.0):
        """Orthogonal input and recurrent weights per gate block, zero biases but the forget gate's
        (1), so the input's signal reaches the top layer at every depth. With PyTorch's default
        weights a 4-layer stack's top output is nearly the same at every position: every position's
        gradient agrees and Adam's first steps overshoot far above ln V (docs/results.md#first-steps).
        Orthogonal blocks keep each layer's gain near 1 (Saxe et al., 2014), a forget bias of 1 lets
        the cell carry the signal (Jozefowicz et al., 2015). The engine calls this on every LSTM it
        builds (utils.models.registry); the constructor keeps the course's initialisation."""
        H = self.hidden_size
        with torch.no_grad():
            for name, parameter in self.lstm.named_parameters():
                if name.startswith("weight"):
                    for gate in parameter.split(H):  # input, forget, cell, output blocks, each (H, fan-in)
                        nn.init.orthogonal_(gate)
                else:
                    parameter.zero_()
                    if name.startswith("bias_ih"):
                        parameter[H:2 * H] = forget_bias  # the forget gate's block; bias_hh stays 0
        return self

    @property
    def tied_weight(self):
        """The (V, E) matrix shared by the input embedding and the output layer."""
        return self.embedding.weight

    def sequence_features(self, inputs):
        """inputs (B, T) -> features (B, T, E) from zero states."""
        return self.features(inputs, self.initial_states(inputs.shape[0], inputs.device))[0]

    def features(self, inputs, hidden_states):
        """Pre-classifier features (B, T, E) and the new (h, c), for the fast loss."""
        embedded = self.dropout(self.embedding(inputs))  # (B, T, E)
        outputs, hidden_states = self._recurrence(embedded, hidden_states)  # (B, T, H)
        return self.classifier[1](self.classifier[0](self.dropout(outputs))), hidden_states

    def _recurrence(self, embedded, hidden_states):
        device_type = embedded.device.type
        half = device_type == "cuda" and torch.get_autocast_dtype(device_type) == torch.float16
        if torch.is_autocast_enabled(device_type) and not half:
            # fp32 under bf16 autocast: autocast would run cuDNN's LSTM in fp16 (no scaler under bf16),
            # and oneDNN's bf16 LSTM fails on CPUs without native bf16. fp16 autocast (below sm_80,
            # with a scaler) keeps fp16 for the tensor cores (docs/gpu.md).
            with torch.autocast(device_type, enabled=False):
                return self.lstm(embedded.float(), tuple(h.float() for h in hidden_states))
        return self.lstm(embedded, hidden_states)

    def forward(self, inputs, hidden_states):
        """inputs (B, T) long, hidden_states (h, c) each (L, B, H) ->
        (log-probabilities (B, T, V), (h, c))."""
        features, hidden_states = self.features(inputs, hidden_states)
        logits = self.classifier[2](features)  # (B, T, V)
        return torch.log_softmax(logits, dim=-1), hidden_states

    def initial_states(self, batch_size, device=None):
        """Zero (h, c), each (num_layers, B, hidden_size), in the parameters' dtype."""
        reference = self.lstm.weight_hh_l0
        device = reference.device if device is None else device
        shape = (self.num_layers, batch_size, self.hidden_size)
        return (torch.zeros(shape, device=device, dtype=reference.dtype),
                torch.zeros(shape, device=device, dtype=reference.dtype))

    @classmethod
    def load_embeddings_from(cls, filename, hidden_size=512, num_layers=1, learn_embeddings=False):
        tokens, _ = read_embeddings(filename)
        vocabulary_size, embedding_size = tokens.shape
        return cls(vocabulary_size, embedding_size, hidden_size, num_layers, learn_embeddings, tokens)
