"""The study's 12 configurations, defined once; run_exp.py, the notebook and the report read them here."""
import re
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


_PART = re.compile(r"(\d+)(?:-(\d+))?")  # N or N-M


def parse_config_list(text):
    """ "all" -> 1..12; "1,3,5-8" -> [1, 3, 5, 6, 7, 8]. Anything else ("2-", "1,,2", "3-1", "13", a number
    twice) is a ValueError that says what is wrong and what is allowed: a typo never starts other runs."""
    if str(text).strip().lower() == "all":
        return sorted(CONFIGS)
    allowed = f"use all, N or a list like 1,3,5-8 of numbers {min(CONFIGS)}-{max(CONFIGS)}"
    numbers = []
    for part in str(text).split(","):
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"Bad configuration list {text!r} (at {part.strip()!r}): {allowed}.")
        lo, hi = int(match[1]), int(match[2] or match[1])
        if lo > hi:
            raise ValueError(f"Bad configuration range {part.strip()!r} in {text!r}: write it low-high; {allowed}.")
        numbers.extend(range(lo, hi + 1))
    unknown = sorted({n for n in numbers if n not in CONFIGS})
    if unknown:
        raise ValueError(f"Unknown configuration(s) {', '.join(map(str, unknown))} in {text!r}: {allowed}.")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"Configuration list {text!r} names a configuration twice: {allowed}.")
    return numbers
