"""The run folder: its format (schema), writing it, checkpoints, provenance. No torch at import."""
