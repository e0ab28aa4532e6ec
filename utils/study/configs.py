"""The study's 12 configurations, defined once; run_exp.py, the notebook and the report read them here."""
from dataclasses import dataclass

from utils.models.registry import display_name


@dataclass(frozen=True)
class ExperimentConfig:
    number: int  # the assignment's configuration number, 1..12; also the run's exp_id
    model: str  # "lstm" or "gpt1"
    layers: int  # LSTM layers or Transformer blocks
    optimizer: str  # "sgd", "momentum", "adam" or "adamw"
    batch_size: int = 16  # sequences of 256 tokens per step
    epochs: int = 10  # passes over the training split

    @property
    def exp_id(self):
        return str(self.number)

    @property
    def label(self):
        """Short name for legends and tables, e.g. "3: LSTM x1, sgd"."""
        return f"{self.number}: {display_name(self.model)} x{self.layers}, {self.optimizer}"


CONFIGS = {
    c.number: c
    for c in [
        ExperimentConfig(1, "lstm", 1, "adam"),
        ExperimentConfig(2, "lstm", 1, "adamw"),
        ExperimentConfig(3, "lstm", 1, "sgd"),
        ExperimentConfig(4, "lstm", 1, "momentum"),
        ExperimentConfig(5, "gpt1", 1, "adam"),
        ExperimentConfig(6, "gpt1", 1, "adamw"),
        ExperimentConfig(7, "gpt1", 1, "sgd"),
        ExperimentConfig(8, "gpt1", 1, "momentum"),
        ExperimentConfig(9, "lstm", 2, "adamw"),
        ExperimentConfig(10, "lstm", 4, "adamw"),
        ExperimentConfig(11, "gpt1", 2, "adamw"),
        ExperimentConfig(12, "gpt1", 4, "adamw"),
    ]
}

# The comparisons the assignment asks for, by configuration number.
GROUPS = {
    "lstm_optimizers": (1, 2, 3, 4),
    "gpt1_optimizers": (5, 6, 7, 8),
    "lstm_layers": (2, 9, 10),
    "gpt1_layers": (6, 11, 12),
}


def parse_config_list(text):
    """ "all" -> 1..12; "1,3,5-8" -> [1, 3, 5, 6, 7, 8]. ValueError names the allowed numbers."""
    if text.strip().lower() == "all":
        return sorted(CONFIGS)
    numbers = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            numbers.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ValueError(f"Bad configuration list {text!r}: use 'all' or numbers like 1,3,5-8.") from None
    unknown = [n for n in numbers if n not in CONFIGS]
    if unknown or not numbers:
        raise ValueError(f"Unknown configuration(s) {unknown or text!r}: choose from 1-12.")
    return numbers
