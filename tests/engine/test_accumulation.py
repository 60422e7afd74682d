"""Gradient accumulation in the real Trainer: n batches of size b accumulated give the update of one batch
of size n*b (model without batch norm), for SGD with momentum, Adam and with global-norm clipping."""

import numpy as np
import paddle
import pytest

from robust_paddle import config as C
from robust_paddle.engine.trainer import Trainer
from robust_paddle.losses import build_loss
from robust_paddle.methods.base import MethodContext
from robust_paddle.methods.standard import StandardMethod
from robust_paddle.models import build_model

N_CLASSES, DIM = 3, 6


class ListLoader:
    """A fixed list of batches with the loader interface the trainer uses."""

    batch_sampler = None

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def make_method(cfg, state=None):
    paddle.seed(0)
    net = build_model("mlp", num_classes=N_CLASSES, input_shape=(DIM,), hidden=[8])
    if state is not None:
        net.set_state_dict(state)
    ctx = MethodContext(cfg=cfg, num_classes=N_CLASSES, input_shape=(DIM,), train_labels=np.zeros(1, np.int64),
                        clean_labels=None, build_network=lambda: net,
                        build_loss=lambda name=None, **kw: build_loss("ce", num_classes=N_CLASSES))
    return StandardMethod(ctx)


def batches(x, y, size):
    return [(paddle.to_tensor(x[i:i + size]), paddle.to_tensor(y[i:i + size]), paddle.to_tensor(np.arange(i, i + size)))
            for i in range(0, len(x), size)]


def fit_once(x, y, *, batch, accum, opt, clip=0.0, init=None):
    cfg = C.from_dict({"train": {"epochs": 1, "accumulate_steps": accum, "progress": False, "visualdl": False,
                                 "grad_clip": clip}})
    method = make_method(cfg, init)
    params = method.parameters()
    optimizer = (paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=params) if opt == "sgd"
                 else paddle.optimizer.Adam(learning_rate=0.01, parameters=params))
    trainer = Trainer(cfg, method, {"train": ListLoader(batches(x, y, batch))}, optimizer=optimizer, scheduler=None,
                      hooks=[], output_dir="/tmp/unused", meta={})
    trainer.fit()
    return trainer, {k: v.numpy() for k, v in method.networks["net"].state_dict().items()}


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, DIM)).astype(np.float32), rng.integers(0, N_CLASSES, 12).astype(np.int64)


@pytest.mark.parametrize("opt,clip", [("sgd", 0.0), ("adam", 0.0), ("sgd", 0.05)])
def test_n_steps_of_b_equal_one_step_of_nb(data, opt, clip):
    x, y = data
    init = make_method(C.from_dict({})).networks["net"].state_dict()
    init = {k: v.clone() for k, v in init.items()}
    t_acc, w_acc = fit_once(x, y, batch=3, accum=4, opt=opt, clip=clip, init=init)
    t_big, w_big = fit_once(x, y, batch=12, accum=1, opt=opt, clip=clip, init=init)
    assert t_acc.global_step == t_big.global_step == 1
    for k in w_big:
        np.testing.assert_allclose(w_acc[k], w_big[k], rtol=1e-5, atol=1e-6)
    assert not np.allclose(w_big["classifier.weight"], init["classifier.weight"].numpy())  # it did update


def test_short_last_group_is_averaged_over_its_own_batches(data):
    """5 batches with accumulate_steps=2: updates after batches 2, 4 and 5; the last update is the mean over
    batch 5 alone, i.e. identical to a run whose last step sees only that batch without accumulation."""
    x, y = data
    x, y = x[:10], y[:10]
    init = {k: v.clone() for k, v in make_method(C.from_dict({})).networks["net"].state_dict().items()}
    t_acc, w_acc = fit_once(x, y, batch=2, accum=2, opt="sgd", init=init)
    assert t_acc.global_step == 3
    # reference: batches of 4, 4 and 2 without accumulation = the same three updates
    xs = [x[0:4], x[4:8], x[8:10]]
    ys = [y[0:4], y[4:8], y[8:10]]
    cfg = C.from_dict({"train": {"epochs": 1, "progress": False, "visualdl": False}})
    method = make_method(cfg, init)
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=method.parameters())
    loader = ListLoader([(paddle.to_tensor(a), paddle.to_tensor(b), paddle.to_tensor(np.arange(len(b))))
                         for a, b in zip(xs, ys)])
    Trainer(cfg, method, {"train": loader}, optimizer=opt, scheduler=None, hooks=[], output_dir="/tmp/unused",
            meta={}).fit()
    for k, v in method.networks["net"].state_dict().items():
        np.testing.assert_allclose(w_acc[k], v.numpy(), rtol=1e-5, atol=1e-6)
