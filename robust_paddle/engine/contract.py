"""The two contracts the trainer drives, defined below the trainer so nothing here imports upwards.

* :class:`Hook` (fvcore/detectron2 style): every hook may implement ``before_train``, ``before_epoch``,
  ``after_step``, ``before_eval``, ``after_eval``, ``after_epoch``, ``after_train`` and ``on_exception``;
  hooks run in ascending ``priority``. ``on_exception`` runs instead of ``after_train`` when training ends early:
  on an error, or with ``GeneratorExit`` when the caller closes ``Trainer.fit_epochs`` before its end; hooks
  release there what they hold (a writer, swapped-in weights). Hooks with state (best value, patience counter) implement
  ``state_dict``/``set_state_dict`` so ``--resume`` continues exactly.
* :class:`TrainableMethod`: what a training strategy offers the loop (``robust_paddle.methods.base.Method``
  implements it for every registered method).

The ``trainer`` argument of every callback is the running :class:`robust_paddle.engine.trainer.Trainer`
(typed ``Any`` here because the trainer module imports this one).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import paddle


class Hook:
    """Base hook: every method is a no-op; ``priority`` orders hooks (lower runs first)."""

    priority: int = 50
    #: name under which state is checkpointed
    name: str = "hook"
    #: True for a hook that switches parameters' ``stop_gradient`` during training (a frozen backbone that
    #: is unfrozen later): under data parallelism the trainer then lets DataParallel find the parameters
    #: that take part in each backward, since its gradient all-reduce is set up for the trainable set it
    #: saw when it was built (see ``engine/distributed.py``, ``wrap_networks``)
    toggles_trainable: bool = False

    def before_train(self, trainer: Any) -> None: ...
    def before_epoch(self, trainer: Any) -> None: ...
    def after_step(self, trainer: Any, terms: dict[str, float]) -> None: ...
    def before_eval(self, trainer: Any) -> None: ...
    def after_eval(self, trainer: Any) -> None: ...
    def after_epoch(self, trainer: Any) -> None: ...
    def after_train(self, trainer: Any) -> None: ...
    def on_exception(self, trainer: Any, exc: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        return None


class TrainableMethod(Protocol):
    """The training-strategy contract the trainer calls (see ``methods/base.py`` for the semantics)."""

    num_classes: int
    networks: dict[str, paddle.nn.Layer]

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int,
                   step: int) -> tuple[paddle.Tensor, dict[str, Any]]: ...
    def parameters(self) -> list[paddle.Tensor]: ...
    def train(self) -> None: ...
    def eval(self) -> None: ...
    def predict(self, x: paddle.Tensor) -> paddle.Tensor: ...
    def predict_all(self, x: paddle.Tensor) -> tuple[paddle.Tensor, list[paddle.Tensor]]: ...
    def before_epoch(self, trainer: Any) -> None: ...
    def after_epoch(self, trainer: Any) -> None: ...
    def clean_probability(self) -> np.ndarray | None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def set_state_dict(self, state: dict[str, Any]) -> None: ...
