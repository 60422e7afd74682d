"""Training engine: the Trainer (loop, AMP, accumulation, clipping) and its hooks."""
