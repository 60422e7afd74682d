"""Optimizers, gradient clipping and learning-rate schedules, selected by registry.

- :func:`build_optimizer` (``OPTIMIZERS``: sgd, rmsprop, adam, nadam, adamax, adamw, radam)
- :func:`build_grad_clip`
- :func:`build_scheduler` (``SCHEDULERS``: constant, cosine, linear, polynomial, step, multistep)
"""

from robust_paddle.optim.adaptive import NAdam, RAdam
from robust_paddle.optim.optimizers import build_grad_clip, build_optimizer, split_decay_params
from robust_paddle.optim.schedulers import ScheduledLR, build_scheduler
from robust_paddle.registry import OPTIMIZERS, SCHEDULERS

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "NAdam",
    "RAdam",
    "ScheduledLR",
    "build_grad_clip",
    "build_optimizer",
    "build_scheduler",
    "split_decay_params",
]
