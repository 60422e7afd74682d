"""methods/promix.py: CSS on a hand-made case, the ProMix loss and pi update against NumPy, MHCS, state and
parameter checks, and an exactly resumed digits run."""

import numpy as np
import paddle
import pytest

from robust_paddle.data.transforms import Pipeline
from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.methods.base import MethodContext
from robust_paddle.methods.correction import mix_lambda
from robust_paddle.methods.promix import ProMixMethod, _deterministic_features, class_wise_small_loss
from tests.method_helpers import build_method, log_softmax, softmax, toy_context


class FeatNet(paddle.nn.Layer):
    """``classifier(forward_features(x))`` with a linear feature map (train and eval mode agree)."""

    def __init__(self, dim, classes, width=5):
        super().__init__()
        self.feature_dim = width
        self.body = paddle.nn.Linear(dim, width)
        self.classifier = paddle.nn.Linear(width, classes)

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.classifier(self.forward_features(x))


def make(labels, *, seed=0, epochs=20, **params):
    paddle.seed(seed)
    base = toy_context(np.asarray(labels), dim=4, classes=3, seed=seed, overrides=[f"train.epochs={epochs}"])
    ctx = MethodContext(cfg=base.cfg, num_classes=3, input_shape=(4,), train_labels=base.train_labels,
                        clean_labels=None, build_network=lambda: FeatNet(4, 3), build_loss=base.build_loss)
    return build_method(ProMixMethod, ctx, **{"warmup_epochs": 1, "rampup_epochs": 4, **params})


def test_class_wise_small_loss_keeps_the_smallest_losses_of_every_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    losses = np.array([0.9, 0.1, 0.5, 0.2, 3.0, 2.0, 0.3, 0.3, 0.0, 5.0, 1.0, 0.2])
    # N / C * rho = 12 / 3 * 0.5 = 2 per class; class 1 has 2 rows: both
    got = class_wise_small_loss(losses, labels, num_classes=3, rho=0.5)
    assert np.flatnonzero(got).tolist() == [1, 3, 4, 5, 8, 11]
    tie = class_wise_small_loss(np.zeros(12), labels, num_classes=3, rho=0.1)  # ceil(0.4) = 1 per class, first row
    assert np.flatnonzero(tie).tolist() == [0, 4, 6]
    assert class_wise_small_loss(losses, labels, num_classes=4, rho=0.0).sum() == 3  # at least 1 per class present


def np_soft_ce(z, t):
    return -(t * log_softmax(z)).sum(1).mean()


def np_promix(m, x, xs, y, idx, pi0, epoch, batch=0):
    """NumPy ProMix loss of every network of ``m`` (current weights) on one batch, and the updated ``pi``."""
    n = len(m.networks)
    W = [(net.body.weight.numpy(), net.body.bias.numpy(), net.classifier.weight.numpy(),
          net.classifier.bias.numpy()) for net in m.networks.values()]
    H = [(h.weight.numpy(), h.bias.numpy()) for h in m.heads]
    ref, pi, onehot = 0.0, pi0.copy(), np.eye(3)[y]
    w, beta = min(epoch / m.rampup_epochs, 1.0), 0.1 * min(epoch / (2 * m.rampup_epochs), 1.0)
    for k in range(n):
        (bw, bb, cw, cb), (hw, hb) = W[k], H[k]
        feat = lambda a, bw=bw, bb=bb: a @ bw + bb  # noqa: E731
        out_w, out_s = feat(x) @ cw + cb, feat(xs) @ cw + cb
        ph_w, ph_s = feat(x) @ hw + hb, feat(xs) @ hw + hb
        lp, lpu = np.log(pi0[k]), np.log(pi0[n + k])
        a_out = m.debias_output
        px = softmax(out_w)
        chosen = m.selections[k][idx] | (px[np.arange(len(y)), y] > m.tau)
        c, u = np.flatnonzero(chosen), np.flatnonzero(~chosen)
        loss_k = sum(np_soft_ce(z[c] + a_out * lp, onehot[c]) for z in (out_w, ph_w))
        loss_k += w * sum(np_soft_ce(z[c] + a_out * lp, onehot[c]) for z in (out_s, ph_s))
        r = np.random.default_rng([0, epoch, batch, k])
        for head in ((cw, cb), (hw, hb)):
            lam, perm = mix_lambda(m.alpha, r), r.permutation(c.size)
            xm = lam * x[c] + (1 - lam) * x[c][perm]
            tm = lam * onehot[c] + (1 - lam) * onehot[c][perm]
            loss_k += w * np_soft_ce(feat(xm) @ head[0] + head[1] + a_out * lp, tm)
        t = softmax(out_w - m.debias_pl * lpu) ** (1 / m.T)
        t /= t.sum(1, keepdims=True)
        if u.size:
            loss_k += beta * (np_soft_ce(ph_w[u] + a_out * lpu, t[u]) + w * np_soft_ce(ph_s[u] + a_out * lpu, t[u]))
        ref += loss_k
        mom = m.bias_momentum
        pi[k] = mom * pi0[k] + (1 - mom) * px[c].mean(0)
        pi[n + k] = mom * pi0[n + k] + (1 - mom) * px[u].mean(0)
    return ref, pi


def promix_case(networks=2, seed=0):
    rng = np.random.default_rng(seed)
    x, xs = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    idx = np.array([5, 1, 0, 3, 2, 4])
    m = make(np.zeros(6, dtype=np.int64), tau=0.5, bias_momentum=0.9, debias_output=0.8, debias_pl=0.7, T=0.5,
             networks=networks)
    m.selections = [np.array([1, 0, 1, 1, 0, 0], bool), np.array([0, 1, 1, 0, 1, 0], bool)][:networks]
    m.pi = rng.dirichlet(np.ones(3), size=2 * networks).astype(np.float32)
    return m, x, xs, y, idx


@pytest.mark.parametrize("networks", [2, 1])
def test_loss_and_pi_match_numpy(networks):
    m, x, xs, y, idx = promix_case(networks)
    pi0 = m.pi.copy()
    epoch = 2  # w = 0.5, beta = 0.1 * 2 / 8
    ref, pi = np_promix(m, x, xs, y, idx, pi0, epoch)
    loss, terms = m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, idx, xs)), epoch=epoch, step=0)
    assert float(loss) == pytest.approx(ref, rel=1e-4)
    np.testing.assert_allclose(m.pi, pi, rtol=1e-5)
    assert 0 < float(terms["labeled_ratio"]) < 1
    assert len(m.networks) == len(m.heads) == len(m.selections) == networks and m.pi.shape == (2 * networks, 3)


def grads(m):
    return [p.grad.numpy().copy() if p.grad is not None else None for p in m.parameters()]


def test_without_a_strong_view_one_forward_serves_both_views_with_the_same_loss_and_gradients():
    """No augmentation: the loader sends no strong view and the step reuses the batch's features; loss, every
    gradient and pi equal the step given the identical view explicitly (two forwards) and the NumPy reference."""
    m, x, _, y, idx = promix_case()
    pi0 = m.pi.copy()
    ref, pi = np_promix(m, x, x, y, idx, pi0, 2)
    out = {}
    for name, batch in (("explicit", (x, y, idx, x)), ("reused", (x, y, idx))):
        m.pi, m._batch = pi0.copy(), 0
        calls = []
        hooks = [net.body.register_forward_post_hook(lambda *a, calls=calls: calls.append(1))
                 for net in m.networks.values()]
        loss, _ = m.train_step(tuple(paddle.to_tensor(a) for a in batch), epoch=2, step=0)
        for h in hooks:
            h.remove()
        loss.backward()
        out[name] = (float(loss), grads(m), m.pi.copy(), len(calls))
        for p in m.parameters():
            p.clear_gradient()
    (l1, g1, p1, n1), (l2, g2, p2, n2) = out["explicit"], out["reused"]
    assert l1 == pytest.approx(ref, rel=1e-4) and l2 == pytest.approx(l1, rel=1e-6)
    np.testing.assert_allclose(p2, pi, rtol=1e-5)
    np.testing.assert_array_equal(p1, p2)
    assert sum(g is not None for g in g1) == len(g1)  # every parameter of both networks and heads has a gradient
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    assert (n1, n2) == (8, 6)  # per network: weak + strong + 2 mixup forwards, then weak + 2 mixup


class DropNet(FeatNet):
    def __init__(self, dim, classes, where):
        super().__init__(dim, classes)
        drop = paddle.nn.Dropout(0.5)
        if where == "body":
            self.body = paddle.nn.Sequential(paddle.nn.Linear(dim, 5), drop)
        else:
            self.classifier = paddle.nn.Sequential(drop, paddle.nn.Linear(5, classes))


def test_features_with_dropout_still_get_their_own_strong_forward_and_the_loader_view_rule():
    assert _deterministic_features(FeatNet(4, 3)) and _deterministic_features(DropNet(4, 3, "classifier"))
    assert not _deterministic_features(DropNet(4, 3, "body"))
    assert _deterministic_features(paddle.nn.Sequential(paddle.nn.Dropout(0.0)))  # p = 0 draws nothing
    m = make(np.zeros(4, dtype=np.int64))
    m._deterministic_features = [False, False]
    m.selections = [np.ones(4, bool), np.ones(4, bool)]
    calls = []
    net = m.networks["net1"]
    hook = net.body.register_forward_post_hook(lambda *a: calls.append(1))
    x = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
    m.train_step(tuple(paddle.to_tensor(a) for a in (x, np.array([0, 1, 2, 0]), np.arange(4))), epoch=2, step=0)
    hook.remove()
    assert len(calls) == 4  # weak, strong (same input, new dropout draw), 2 mixups

    class DS:
        def __init__(self, augment, strong):
            self.pipeline = Pipeline(kind="image", mean=(0.0,), std=(1.0,), augment=augment, strong_augment=strong)

    assert m.loader_views(DS("none", "none")) == ()
    assert m.loader_views(DS("none", "strong")) == ((1, True),)
    assert m.loader_views(DS("flip", "none")) == ((1, True),)  # weak view augmented: the plain strong view differs
    assert m.loader_views(object()) == ((1, True),)  # no pipeline to ask (text)


def test_warm_up_is_ce_of_both_networks_and_mhcs_adds_confident_matches():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(4, 4)).astype("float32"), np.array([0, 1, 2, 1])
    m = make(np.zeros(4, dtype=np.int64), warmup_epochs=2)
    zs = [n(paddle.to_tensor(x)).numpy() for n in m.networks.values()]
    loss, _ = m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, np.arange(4), x)), epoch=0, step=0)
    assert float(loss) == pytest.approx(sum(np_soft_ce(z, np.eye(3)[y]) for z in zs), rel=1e-5)
    m.selections = [np.zeros(4, bool), np.zeros(4, bool)]
    for n in m.networks.values():  # every net predicts class 1 with probability ~1
        n.classifier.weight.set_value(np.zeros((5, 3), np.float32))
        n.classifier.bias.set_value(np.array([0.0, 20.0, 0.0], np.float32))
    _, terms = m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, np.arange(4), x)), epoch=3, step=0)
    assert terms["labeled_ratio"] == pytest.approx(0.5)  # rows 1 and 3 (label 1) by MHCS, none by CSS


def test_state_round_trip_and_checks():
    labels = np.array([0, 1, 2, 0])
    m = make(labels)
    assert m.clean_probability() is None
    m.selections = [np.array([1, 0, 1, 0], bool), np.array([1, 1, 0, 0], bool)]
    m.pi[:] = 0.2
    assert m.clean_probability().tolist() == [1.0, 0.5, 0.5, 0.0]
    other = make(labels, seed=4)
    other.set_state_dict(m.state_dict())
    assert np.array_equal(other.pi, m.pi) and all(np.array_equal(a, b) for a, b in zip(other.selections, m.selections))
    np.testing.assert_array_equal(other.heads[1].weight.numpy(), m.heads[1].weight.numpy())
    with pytest.raises(CheckpointError, match=r"not a ProMix state of 2 network\(s\) for 3 classes \(keys \['targets'\]"):
        other.set_state_dict({"targets": 1})
    with pytest.raises(CheckpointError, match=r"ProMix selections are not over this run's 4 training samples"):
        other.set_state_dict({**m.state_dict(), "selections": [np.ones(3, bool), None]})
    with pytest.raises(ConfigError, match=r"^method.params.rho_end: 1.5 is out of range; must be <= 1.0 and >= 0.0$"):
        make(labels, rho_end=1.5)
    with pytest.raises(ConfigError, match=r"method.params.warmup_epochs=20 leaves method 'promix' no training"):
        make(labels, warmup_epochs=20)
    ctx = toy_context(labels, dim=4, classes=3, seed=0)  # a model without forward_features
    with pytest.raises(ConfigError, match=r"method 'promix' needs a model with feature_dim, forward_features"):
        ProMixMethod(ctx, warmup_epochs=1)


def test_digits_run_resumes_exactly_and_selects_mostly_clean_samples(tmp_path):
    from tests.method_helpers import train_and_resume

    ma, mb = train_and_resume("promix/digits.yaml", tmp_path, ["data.subset=300", "train.epochs=4",
                                                                  "method.params.warmup_epochs=1",
                                                                  "method.params.rampup_epochs=2"])
    a = ma
    b = mb
    np.testing.assert_allclose(a["pi"], b["pi"], atol=1e-6)
    assert all(np.array_equal(s, t) for s, t in zip(a["selections"], b["selections"]))
    table = np.load(tmp_path / "full" / "train_labels.npy")
    noisy = table["label"] != table["clean_label"]
    sel = np.mean(a["selections"], axis=0) > 0
    assert noisy[sel].mean() < 0.5 * noisy.mean()  # the selected set is far cleaner than the training set
