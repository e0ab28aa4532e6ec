"""The one error of bad input, shared by the entry points, the engine and the study. Importing it
imports nothing else (no torch), so that a command can refuse bad input before loading anything."""


class UsageError(ValueError):
    """Bad input; its message is one line that says what to do. Nothing was written."""
