"""The ``standard`` method: one network trained with any registered loss."""

from __future__ import annotations

from typing import Any

import paddle

from robust_paddle.methods.base import Method, MethodContext
from robust_paddle.registry import METHODS


@METHODS.register("standard")
class StandardMethod(Method):
    """One network, one loss (``cfg.loss``): plain ERM, the baseline every robust method is compared to.

    With a robust loss (``gce``, ``sce``, ``nce_rce`` ...) this is the robust-loss family of methods.
    """

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.networks = {"net": ctx.build_network()}
        self.loss_fn = ctx.build_loss()

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, _ = batch[:3]
        logits = self.networks["net"](x)
        loss = self.loss_fn(logits, y)
        return loss, {"loss": loss}
