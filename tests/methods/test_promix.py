"""methods/promix.py: CSS on a hand-made case, the ProMix loss and pi update against NumPy, MHCS, state and
parameter checks, and an exactly resumed digits run."""

import numpy as np
import paddle
import pytest

from robust_paddle.data.transforms import Pipeline
from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.methods.base import MethodContext
from robust_paddle.methods.correction import mix_lambda
from robust_paddle.methods.promix import (
    ProMixMethod,
    _deterministic_features,
    class_wise_small_loss,
    label_guessing_by_agreement,
)
from robust_paddle.ops import fmix_mask
from tests.method_helpers import build_method, log_softmax, softmax, toy_context


class FeatNet(paddle.nn.Layer):
    """``classifier(forward_features(x))`` with a linear feature map (train and eval mode agree)."""

    def __init__(self, dim, classes, width=5):
        super().__init__()
        self.feature_dim = width
        self.body = paddle.nn.Linear(dim, width)
        self.classifier = paddle.nn.Linear(width, classes)

    def forward_features(self, x):
        return self.body(paddle.flatten(x, start_axis=1))  # [B, 4] or 2x2 "images" [B, 1, 2, 2]

    def forward(self, x):
        return self.classifier(self.forward_features(x))


def make(labels, *, seed=0, epochs=20, input_shape=(4,), **params):
    paddle.seed(seed)
    base = toy_context(np.asarray(labels), dim=4, classes=3, seed=seed, overrides=[f"train.epochs={epochs}"])
    ctx = MethodContext(cfg=base.cfg, num_classes=3, input_shape=input_shape, train_labels=base.train_labels,
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


def test_class_balance_zero_is_global_small_loss_selection_of_the_same_size():
    labels = np.array([0] * 8 + [1] * 2)
    losses = np.r_[np.arange(8) * 0.1, [5.0, 6.0]]  # the rare class looks noisy
    css = class_wise_small_loss(losses, labels, num_classes=2, rho=0.6)  # quota ceil(3) = 3: 3 + 2
    assert np.flatnonzero(css).tolist() == [0, 1, 2, 8, 9]
    glob = class_wise_small_loss(losses, labels, num_classes=2, rho=0.6, balance=0.0)
    assert np.flatnonzero(glob).tolist() == [0, 1, 2, 3, 4]  # the 5 smallest of the whole set: no rare row
    half = class_wise_small_loss(losses, labels, num_classes=2, rho=0.6, balance=0.5)
    assert [int(half[labels == c].sum()) for c in range(2)] == [4, 1]  # round(0.5 * 5 + 0.5 * 3), round(0.5 * 2)
    assert np.flatnonzero(half).tolist() == [0, 1, 2, 3, 8]
    np.testing.assert_array_equal(class_wise_small_loss(losses, labels, num_classes=2, rho=0.6, balance=1.0), css)
    with pytest.raises(ValueError, match=r"balance must be in \[0, 1\]"):
        class_wise_small_loss(losses, labels, num_classes=2, rho=0.6, balance=-0.1)


def test_select_applies_class_balance(monkeypatch):
    """The method's CSS takes its class_balance: the paper's quota (1) keeps the rare class, 0 the global smallest."""
    from types import SimpleNamespace

    import robust_paddle.methods.promix as promix_mod
    from tests.method_helpers import log_trainer

    labels = np.array([0] * 8 + [1] * 2 + [2] * 2)
    losses = np.r_[np.arange(8) * 0.1, [5.0, 6.0], [0.05, 0.15]]  # class 1 looks noisy
    monkeypatch.setattr(promix_mod, "train_set_losses", lambda trainer: losses[None])
    trainer = log_trainer(loaders={"train_eval": SimpleNamespace(dataset=SimpleNamespace(labels=labels))})
    picked = {}
    for balance in (1.0, 0.0):
        m = make(labels, networks=1, class_balance=balance)
        m.select(trainer, 4)  # rho 0.6 after the ramp: quota ceil(12 / 3 * 0.6) = 3
        picked[balance] = np.flatnonzero(m.selections[0]).tolist()
    assert picked[1.0] == [0, 1, 2, 8, 9, 10, 11]
    assert picked[0.0] == [0, 1, 2, 3, 4, 10, 11]  # the 7 smallest of the whole set: none of class 1
    with pytest.raises(ValueError, match=r"method.params.class_balance: 1.5 is out of range"):
        make(labels, class_balance=1.5)


def np_soft_ce(z, t):
    return -(t * log_softmax(z)).sum(1).mean()


def np_promix(m, x, xs, y, idx, pi0, epoch, batch=0, *, lga=False):
    """NumPy ProMix loss of every network of ``m`` (current weights) on one batch, and the updated ``pi``
    (``m.fmix``: the FMix terms; ``lga``: label guessing by agreement)."""
    n, rows = len(m.networks), np.arange(len(y))
    f64 = lambda *arrays: tuple(np.asarray(a, np.float64) for a in arrays)  # noqa: E731
    W = [f64(net.body.weight.numpy(), net.body.bias.numpy(), net.classifier.weight.numpy(),
             net.classifier.bias.numpy()) for net in m.networks.values()]
    H = [f64(h.weight.numpy(), h.bias.numpy()) for h in m.heads]
    x, xs = f64(x, xs)
    ref, pi, onehot = 0.0, pi0.copy(), np.eye(3)[y]
    w = min(epoch / m.rampup_epochs, 1.0)
    beta = 0.1 * epoch / (2 * m.rampup_epochs) if epoch < 2 * m.rampup_epochs else 0.0  # the reference's schedule
    flat = lambda a: a.reshape(len(a), int(np.prod(a.shape[1:])))  # noqa: E731
    feats = [lambda a, bw=bw, bb=bb: flat(a) @ bw + bb for bw, bb, _, _ in W]
    out_w = [feats[k](x) @ W[k][2] + W[k][3] for k in range(n)]
    px = np.stack([softmax(z) for z in out_w])
    chosen = np.stack([m.selections[k][idx] | (px[k][rows, y] > m.tau) for k in range(n)])
    guessed = label_guessing_by_agreement(chosen, px, tau=m.tau, threshold=m.lga_threshold) if lga \
        else np.zeros_like(chosen)
    for k in range(n):
        (_, _, cw, cb), (hw, hb), feat = W[k], H[k], feats[k]
        out_s = feat(xs) @ cw + cb
        ph_w, ph_s = feat(x) @ hw + hb, feat(xs) @ hw + hb
        lp, lpu = np.log(pi0[k]), np.log(pi0[n + k])
        a_out = m.debias_output
        # the reference's pseudo_label_l: the given label on CSS / MHCS rows, the debiased prediction on LGA rows
        guess = np.eye(3)[np.argmax(out_w[k] - m.debias_pl * lp, axis=1)]
        target = np.where(guessed[k][:, None], guess, onehot)
        c, u = np.flatnonzero(chosen[k] | guessed[k]), np.flatnonzero(~(chosen[k] | guessed[k]))
        loss_k = sum(np_soft_ce(z[c] + a_out * lp, target[c]) for z in (out_w[k], ph_w))
        loss_k += w * sum(np_soft_ce(z[c] + a_out * lp, target[c]) for z in (out_s, ph_s))
        r = np.random.default_rng([0, epoch, batch, k])
        for h, head in enumerate(((cw, cb), (hw, hb))):
            if h == 0 or m.mixup_draws == 2:  # mixup_draws 1: the pseudo head classifies the primary head's draw
                lam, perm = mix_lambda(m.alpha, r), r.permutation(c.size)
                xm = lam * x[c] + (1 - lam) * x[c][perm]
                tm = lam * target[c] + (1 - lam) * target[c][perm]
                if m.fmix:
                    lam_f, mask = fmix_mask(r, x.shape[-2:])
                    pf = r.permutation(c.size)
                    xf = mask * x[c] + (1 - mask) * x[c][pf]
            loss_k += w * np_soft_ce(feat(xm) @ head[0] + head[1] + a_out * lp, tm)
            if m.fmix:  # reference: fmix_loss = lam CE(z, y) + (1 - lam) CE(z, y[perm]) on the masked mix
                zf = feat(xf) @ head[0] + head[1] + a_out * lp
                loss_k += w * (lam_f * np_soft_ce(zf, target[c]) + (1 - lam_f) * np_soft_ce(zf, target[c][pf]))
        t = softmax(out_w[k] - m.debias_pl * lpu) ** (1 / m.T)
        t /= t.sum(1, keepdims=True)
        if u.size:
            loss_k += beta * (np_soft_ce(ph_w[u] + a_out * lpu, t[u]) + w * np_soft_ce(ph_s[u] + a_out * lpu, t[u]))
        ref += loss_k
        mom = m.bias_momentum
        for slot, part in ((k, c), (n + k, u)):  # an empty side keeps its pi
            pi[slot] = mom * pi0[slot] + (1 - mom) * px[k][part].mean(0) if part.size else pi0[slot]
    return ref, pi, guessed


def promix_case(networks=2, seed=0, shape=(4,), **params):
    rng = np.random.default_rng(seed)
    x, xs = rng.normal(size=(6, *shape)).astype("float32"), rng.normal(size=(6, *shape)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    idx = np.array([5, 1, 0, 3, 2, 4])
    m = make(np.zeros(6, dtype=np.int64), tau=0.5, bias_momentum=0.9, debias_output=0.8, debias_pl=0.7, T=0.5,
             networks=networks, input_shape=shape, **params)
    m.selections = [np.array([1, 0, 1, 1, 0, 0], bool), np.array([0, 1, 1, 0, 1, 0], bool)][:networks]
    m.pi = rng.dirichlet(np.ones(3), size=2 * networks).astype(np.float32)
    return m, x, xs, y, idx


@pytest.mark.parametrize("networks,draws", [(2, 2), (1, 2), (2, 1), (1, 1)])
def test_loss_and_pi_match_numpy(networks, draws):
    m, x, xs, y, idx = promix_case(networks, mixup_draws=draws)
    pi0 = m.pi.copy()
    epoch = 2  # w = 0.5, beta = 0.1 * 2 / 8
    ref, pi, _ = np_promix(m, x, xs, y, idx, pi0, epoch)
    loss, terms = m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, idx, xs)), epoch=epoch, step=0)
    assert float(loss) == pytest.approx(ref, rel=1e-4)
    np.testing.assert_allclose(m.pi, pi, rtol=1e-5)
    assert 0 < float(terms["labeled_ratio"]) < 1
    assert len(m.networks) == len(m.heads) == len(m.selections) == networks and m.pi.shape == (2 * networks, 3)


def reference_fmix_mask(seed, h, w):
    """The FMix reference's ``sample_mask`` (decay 3, alpha 1, max_soft 0) step by step, on the same draws."""
    r = np.random.default_rng(seed)
    lam = r.beta(1.0, 1.0)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[: w // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = (np.ones(1) / (np.maximum(freqs, np.array([1.0 / max(w, h)])) ** 3))[..., None]
    spectrum = scale * r.standard_normal((*freqs.shape, 2))
    image = np.real(np.fft.irfftn(spectrum[..., 0] + 1j * spectrum[..., 1], (h, w)))
    image = (image - image.min()) / (image - image.min()).max()
    order = image.reshape(-1).argsort()[::-1]
    num = int(np.ceil(lam * h * w)) if r.random() > 0.5 else int(np.floor(lam * h * w))
    mask = np.zeros(h * w)
    mask[order[:num]] = 1
    return lam, mask.reshape(h, w)


@pytest.mark.parametrize("seed,h,w", [(0, 8, 8), (3, 7, 9), (5, 28, 28), (9, 2, 2)])
def test_fmix_mask_is_the_reference_recipe(seed, h, w):
    lam, mask = fmix_mask(np.random.default_rng(seed), (h, w))
    ref_lam, ref = reference_fmix_mask(seed, h, w)
    assert lam == ref_lam and mask.dtype == np.float32 and mask.shape == (h, w)
    np.testing.assert_array_equal(mask, ref)
    assert mask.sum() in (np.floor(lam * h * w), np.ceil(lam * h * w))
    if h * w >= 64:  # low frequency: neighbouring pixels mostly agree (a random mask of this mean: ~50%)
        assert (mask[1:] == mask[:-1]).mean() > 0.75


def test_label_guessing_by_agreement_hand_case():
    # 2 networks, batch 5, threshold 0.8: room int(5 * 0.8) - chosen
    px = np.array([[[0.99, 0.01], [0.995, 0.005], [0.2, 0.8], [0.992, 0.008], [0.999, 0.001]],
                   [[0.98, 0.02], [0.996, 0.004], [0.01, 0.99], [0.993, 0.007], [0.999, 0.001]]])
    chosen = np.array([[1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], bool)
    got = label_guessing_by_agreement(chosen, px, tau=0.985, threshold=0.8)
    # agree & confident (both > 0.985, same class): rows 1, 3, 4 (row 0: net 2 at 0.98; row 2: net 1 at 0.8)
    # net 1: room 4 - 1 = 3 -> all three; net 2: 4 of 5 chosen = 0.8, not below the threshold -> none
    assert got.tolist() == [[0, 1, 0, 1, 1], [0, 0, 0, 0, 0]]
    got = label_guessing_by_agreement(chosen, px, tau=0.985, threshold=0.6)  # room int(3) - 1 = 2: best two
    assert got[0].tolist() == [0, 1, 0, 0, 1]  # mean top probability 0.999 (row 4), 0.9955 (row 1) > 0.9925 (3)


@pytest.mark.parametrize("draws", [2, 1])
def test_fmix_and_label_guessing_terms_match_numpy(draws):
    m, x, xs, y, idx = promix_case(shape=(1, 2, 2), fmix=True, lga_epochs=2, lga_threshold=0.9, mixup_draws=draws)
    m.selections = [np.array([1, 1, 0, 0, 0, 0], bool), np.array([0, 0, 1, 1, 0, 0], bool)]
    for net in m.networks.values():  # both networks agree: class 2 where pixel [0, 0] > 0, else class 0
        net.body.weight.set_value(np.eye(4, 5, dtype=np.float32))
        net.body.bias.set_value(np.zeros(5, np.float32))
        net.classifier.bias.set_value(np.zeros(3, np.float32))
        w = np.zeros((5, 3), np.float32)
        w[0] = [-8.0, 0.0, 8.0]
        net.classifier.weight.set_value(w)
    pi0 = m.pi.copy()
    epoch = 18  # lga_epochs=2 of 20: LGA on from epoch 18; beta = 0 from 2 * rampup (8) on
    assert m.lga_active(epoch) and not m.lga_active(17)
    ref, pi, guessed = np_promix(m, x, xs, y, idx, pi0, epoch, lga=True)
    # pixel [0, 0] of the batch: 0.126, -0.536, -0.704, -2.325, -0.544, -0.129 -> predictions 2 0 0 0 0 0 with top
    # probability 0.67, 0.986, 0.996, 1.0, 0.987, 0.68; labels 0 1 2 0 1 2: MHCS (tau 0.5) adds row 3. Net 1 (CSS
    # rows 1, 2) has 3 of 6, room int(6 * 0.9) - 3 = 2: rows 4 and 5 (higher than row 0); net 2 (CSS rows 3, 4)
    # has 2, room 3: rows 2, 1, 5
    assert guessed.astype(int).tolist() == [[0, 0, 0, 0, 1, 1], [0, 1, 1, 0, 0, 1]]
    loss, terms = m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, idx, xs)), epoch=epoch, step=0)
    assert float(loss) == pytest.approx(ref, rel=1e-4)
    np.testing.assert_allclose(m.pi, pi, rtol=1e-5)
    assert float(terms["guessed_ratio"]) == pytest.approx(guessed.mean()) and float(terms["fmix"]) > 0
    m.fmix = False  # the same step without FMix is a different loss (the term is really in it)
    m.pi, m._batch = pi0.copy(), 0
    assert float(m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, idx, xs)), epoch=epoch, step=0)[0]) \
        != pytest.approx(ref, rel=1e-4)


def test_fmix_and_lga_parameter_checks():
    with pytest.raises(ConfigError, match=r"lga_epochs=2: label guessing by agreement needs two networks"):
        make(np.zeros(4, dtype=np.int64), networks=1, lga_epochs=2)
    with pytest.raises(ConfigError, match=r"method.params.fmix: FMix masks images \[C, H, W\]; this input has shape "
                                          r"\(4,\)"):
        make(np.zeros(4, dtype=np.int64), fmix=True)
    assert make(np.zeros(4, dtype=np.int64), lga_epochs=0.25).lga_epochs == 5  # a fraction of the 20 epochs


def grads(m):
    return [p.grad.numpy().copy() if p.grad is not None else None for p in m.parameters()]


def test_without_a_strong_view_one_forward_serves_both_views_with_the_same_loss_and_gradients():
    """No augmentation: the loader sends no strong view and the step reuses the batch's features; loss, every
    gradient and pi equal the step given the identical view explicitly (two forwards) and the NumPy reference."""
    m, x, _, y, idx = promix_case(mixup_draws=2)  # the reference: a mixup forward per head
    pi0 = m.pi.copy()
    ref, pi, _ = np_promix(m, x, x, y, idx, pi0, 2)
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


def test_one_mixup_draw_saves_a_backbone_forward_per_network_and_matches_numpy():
    """mixup_draws: 1 -- both heads classify one mixed batch: one forward fewer per network than the reference's two
    draws, a different loss (the draws really differ), and the NumPy reference of that loss."""
    losses, calls = {}, {}
    for draws in (2, 1):
        m, x, _, y, idx = promix_case(mixup_draws=draws)
        ref, _, _ = np_promix(m, x, x, y, idx, m.pi.copy(), 2)
        seen = []
        hooks = [net.body.register_forward_post_hook(lambda *a, seen=seen: seen.append(1))
                 for net in m.networks.values()]
        loss, _ = m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, idx)), epoch=2, step=0)
        for h in hooks:
            h.remove()
        assert float(loss) == pytest.approx(ref, rel=1e-4)
        losses[draws], calls[draws] = float(loss), len(seen)
    assert calls == {2: 6, 1: 4}  # per network: weak + 2 mixups, or weak + 1 mixup
    assert losses[1] != pytest.approx(losses[2], rel=1e-3)
    with pytest.raises(ConfigError, match=r"method.params.mixup_draws: 3 is out of range"):
        make(np.zeros(4, dtype=np.int64), mixup_draws=3)


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
    m = make(np.zeros(4, dtype=np.int64), mixup_draws=2)
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


@pytest.mark.parametrize("extra", [[], ["method.params.mixup_draws=1", "method.params.fmix=true"]])
def test_digits_run_resumes_exactly_and_selects_mostly_clean_samples(tmp_path, extra):
    from tests.method_helpers import train_and_resume

    ma, mb = train_and_resume("promix/digits.yaml", tmp_path, ["data.subset=300", "train.epochs=4",
                                                                  "method.params.warmup_epochs=1",
                                                                  "method.params.rampup_epochs=2", *extra])
    a = ma
    b = mb
    np.testing.assert_allclose(a["pi"], b["pi"], atol=1e-6)
    assert all(np.array_equal(s, t) for s, t in zip(a["selections"], b["selections"]))
    table = np.load(tmp_path / "full" / "train_labels.npy")
    noisy = table["label"] != table["clean_label"]
    sel = np.mean(a["selections"], axis=0) > 0
    assert noisy[sel].mean() < 0.5 * noisy.mean()  # the selected set is far cleaner than the training set
