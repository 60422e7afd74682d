"""``sop``: sparse over-parameterisation of the label noise (SOP, and SOP+ with its two extra terms).

Liu, Zhu, Qu & You 2022, "Robust Training under Label Noise by Over-parameterization" (ICML),
https://arxiv.org/abs/2202.14026. Label noise is sparse, so it is modelled per training sample ``i`` by two
learned vectors, ``u_i`` [1] and ``v_i`` [C] (initialised ~N(0, init_std^2)), whose squares absorb it: with the
given label's one-hot ``y_i`` [C] and ``s_i = clamp(u_i^2 y_i) - clamp(v_i^2 (1 - y_i))`` (each clamped to
[0, 1 - 1e-4])::

    q_i  = clamp(clamp(softmax(z_i) + s_i, min=1e-4) / |.|_1, 1e-4, 1)     (v_i^2 term detached here)
    loss = mean_i -<y_i, log q_i>                                           (CE on the corrected prediction)
         + sum_i |onehot(argmax z_i) + s_i - y_i|^2 / B                    (u_i^2 term detached here)
         + balance * -<1/C, log mean_i q_i>                                 (SOP+ class balance)
         + consistency * mean_i KL(softmax(z_i) || softmax(z'_i))           (SOP+, z' a strong view)

so ``u`` learns only through the cross-entropy, ``v`` only through the squared error and the network never
through the squared error (the reference code's stop-gradients). Implicit regularisation of the small
initialisation keeps ``u``, ``v`` sparse: they grow only where the network's prediction contradicts the label.
``u`` and ``v`` are trained by plain SGD (no momentum, no weight decay, constant rates ``lr_u``, ``lr_v``) as in
the reference; the paper's values: CIFAR-10 ``lr_u = lr_v = 10``; CIFAR-100 ``lr_u = 1``, ``lr_v = 10``
(symmetric) or 100 (asymmetric); SOP+ ``consistency = 0.9``, ``balance = 0.1``. The network is evaluated and
exported alone.

How the step works here: the trainer owns one optimizer over the networks, so the per-sample variables are
not Paddle parameters but float32 arrays ``u`` [N, 1] and ``v`` [N, C]. Each step evaluates the same loss twice
on the batch's rows: once with ``u``, ``v`` fixed (the network's loss, returned to the trainer) and once on
the detached logits with ``u``, ``v`` as leaves, whose gradients give the SGD step applied at once. Both
gradients are the partial derivatives of one loss at one point, i.e. exactly the reference's simultaneous
update, for a few element-wise [B, C] operations. With ``train.accumulate_steps > 1`` each micro-batch's
mean is used (a sample is in one micro-batch per epoch). Data parallel: every rank applies every rank's
updates of the step (all-gather of rows and deltas), so all ranks hold the same ``u``, ``v``. Both arrays are
checkpointed (exact resume). Clean probability for the report: ``1 - clamp(u_i^2, 0, 1)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F

from robust_paddle.engine import distributed as dist
from robust_paddle.errors import CheckpointError
from robust_paddle.methods.base import Method, MethodContext
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

__all__ = ["SOPMethod", "sop_loss"]

EPS = 1e-4  # the reference's clamp of the corrected prediction and of u^2, v^2 (to 1 - EPS)


def sop_loss(logits: paddle.Tensor, onehot: paddle.Tensor, u: paddle.Tensor, v: paddle.Tensor, *,
             balance: float = 0.0) -> tuple[paddle.Tensor, dict[str, paddle.Tensor]]:
    """SOP's loss on one batch (without the SOP+ consistency term, which needs a second view).

    Args:
        logits: [B, C] network outputs (float32).
        onehot: [B, C] float32 one-hot given labels ``y``.
        u: [B, 1] the batch's rows of ``u``; v: [B, C] its rows of ``v``.
        balance: weight of the class-balance term (SOP+; 0 = off).

    Returns:
        (scalar loss, {"ce", "mse", "balance"} terms). Gradients: ``u`` through ``ce`` (and ``balance``), ``v``
        through ``mse`` only, ``logits`` through ``ce`` (and ``balance``) only.
    """
    u_sq = (u * u * onehot).clip(0.0, 1.0 - EPS)
    v_sq = (v * v * (1.0 - onehot)).clip(0.0, 1.0 - EPS)
    q = (F.softmax(logits, axis=-1) + u_sq - v_sq.detach()).clip(min=EPS)
    q = (q / q.sum(axis=1, keepdim=True).clip(min=EPS)).clip(EPS, 1.0)
    ce = -(onehot * paddle.log(q)).sum(axis=1).mean()
    hard = F.one_hot(logits.detach().argmax(axis=1), logits.shape[1]).astype("float32")
    mse = ((hard + u_sq.detach() - v_sq - onehot) ** 2).sum() / logits.shape[0]
    terms = {"ce": ce, "mse": mse}
    loss = ce + mse
    if balance > 0:
        mean_q = q.mean(axis=0).clip(EPS, 1.0)
        bal = -paddle.log(mean_q).mean()  # <1/C, -log mean q>
        loss = loss + balance * bal
        terms["balance"] = bal
    return loss, terms


@METHODS.register("sop")
class SOPMethod(Method):
    """Sparse over-parameterisation (Liu et al. 2022): per-sample ``u``, ``v`` absorb the label noise.

    Args:
        ctx: the method context.
        lr_u: SGD learning rate of ``u`` (> 0).
        lr_v: SGD learning rate of ``v`` (> 0).
        init_std: standard deviation of the Gaussian initialisation of ``u`` and ``v`` (the reference's 1e-8).
        consistency: SOP+ weight of the KL between the predictions on the sample and on its strong view
            (``data.strong_augment``; 0 = off, then no second view is loaded).
        balance: SOP+ weight of the class-balance term (0 = off).

    Raises:
        ConfigError: a parameter outside its range (names ``method.params.<key>``).
    """

    name = "sop"
    uses = ()  # loss.*: SOP's cross-entropy on the corrected prediction is part of the method
    ignores_because = ("its own loss: cross-entropy on the prediction corrected by u^2 y - v^2 (1 - y), plus "
                       "the squared error that fits v")

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``method.params`` of ``sop`` (checked by the registry)."""

        lr_u: float = param(1.0, min=0.0, min_open=True, doc="SGD rate of u (10 CIFAR-10, 1 CIFAR-100)")
        lr_v: float = param(10.0, min=0.0, min_open=True, doc="SGD rate of v (10 CIFAR-10; 10 sym / 100 asym CIFAR-100)")
        init_std: float = param(1e-8, min=0.0, min_open=True, doc="std of the N(0, std^2) start of u and v")
        consistency: float = param(0.0, min=0.0, doc="SOP+: weight of KL(weak || strong view) (0.9; 0 = off)")
        balance: float = param(0.0, min=0.0, doc="SOP+: weight of the class-balance term (0.1; 0 = off)")

    def __init__(self, ctx: MethodContext, *, lr_u: float = 1.0, lr_v: float = 10.0, init_std: float = 1e-8,
                 consistency: float = 0.0, balance: float = 0.0) -> None:
        super().__init__(ctx)
        # checked by the registry against Params; the constructor takes the validated values
        self.lr_u, self.lr_v, init_std = float(lr_u), float(lr_v), float(init_std)
        self.consistency, self.balance = float(consistency), float(balance)
        self.networks = {"net": ctx.build_network()}
        rng = np.random.default_rng(int(ctx.cfg.seed or 0))  # the same start on every rank
        self.u = (rng.standard_normal((ctx.num_train, 1)) * init_std).astype(np.float32)
        self.v = (rng.standard_normal((ctx.num_train, ctx.num_classes)) * init_std).astype(np.float32)

    def loader_views(self, dataset: Any) -> tuple[tuple[int, bool], ...]:
        """SOP+ (``consistency > 0``): a strong view of every sample (``data.strong_augment``); SOP: none."""
        return ((1, True),) if self.consistency > 0 else ()

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, idx = batch[:3]
        b = x.shape[0]
        two = self.consistency > 0
        out = self.networks["net"](paddle.concat([x, batch[3]]) if two else x).astype("float32")
        logits = out[:b]
        rows = np.asarray(idx.numpy(), dtype=np.int64)
        onehot = F.one_hot(y.astype("int64").reshape([-1]), self.num_classes).astype("float32")
        u_b = paddle.to_tensor(self.u[rows], stop_gradient=False)
        v_b = paddle.to_tensor(self.v[rows], stop_gradient=False)
        loss, terms = sop_loss(logits, onehot, u_b.detach(), v_b.detach(), balance=self.balance)
        if two:  # the reference's KL(p_weak (detached) || p_strong), summed over classes
            p1 = F.softmax(logits.detach(), axis=-1)
            kl = (p1 * (paddle.log(p1.clip(min=1e-12)) - F.log_softmax(out[b:], axis=-1))).sum(axis=1).mean()
            loss = loss + self.consistency * kl
            terms["consistency"] = kl
        uv_loss, _ = sop_loss(logits.detach(), onehot, u_b, v_b, balance=self.balance)
        grad_u, grad_v = paddle.grad(uv_loss, [u_b, v_b], allow_unused=True)
        du = -self.lr_u * (grad_u.numpy() if grad_u is not None else np.zeros_like(self.u[rows]))
        dv = -self.lr_v * (grad_v.numpy() if grad_v is not None else np.zeros_like(self.v[rows]))
        self._apply(rows, du.astype(np.float32), dv.astype(np.float32))
        terms = {"loss": loss, **terms}
        return loss, terms

    def _apply(self, rows: np.ndarray, du: np.ndarray, dv: np.ndarray) -> None:
        """Add the SGD steps ``du`` [B, 1], ``dv`` [B, C] to the rows (repeated rows add up, as autograd's
        gather does); under data parallelism every rank applies every rank's steps."""
        if dist.is_distributed():
            parts = zip(dist.all_gather_array(rows), dist.all_gather_array(du), dist.all_gather_array(dv))
        else:
            parts = [(rows, du, dv)]
        for r, a, b in parts:
            r = np.asarray(r, dtype=np.int64)
            np.add.at(self.u, r, a)
            np.add.at(self.v, r, b)

    def clean_probability(self) -> np.ndarray | None:
        """[N] ``1 - clamp(u_i^2, 0, 1)``: ``u_i^2`` is the share of the given label SOP attributes to noise."""
        return (1.0 - np.clip(self.u[:, 0] ** 2, 0.0, 1.0)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"u": self.u, "v": self.v}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        state = state or {}
        for key, ref in (("u", self.u), ("v", self.v)):
            arr = state.get(key)
            if arr is None or np.asarray(arr).shape != ref.shape:
                shape = None if arr is None else list(np.asarray(arr).shape)
                raise CheckpointError(f"method state: SOP {key} of shape {shape}, this run needs {list(ref.shape)} "
                                      "(another method, dataset or split?)")
        self.u = np.asarray(state["u"], dtype=np.float32).copy()
        self.v = np.asarray(state["v"], dtype=np.float32).copy()
