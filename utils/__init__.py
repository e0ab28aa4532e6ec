"""Helpers for the IFT6135 assignment 2 study, split by topic (data, embeddings, training, reporting)."""
