"""Composition root: builds runs from a Config and holds the entry points (train, evaluate, k-fold, demo)."""
