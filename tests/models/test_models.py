"""Models: shapes for every registry entry, feature split, vision names, user factories, checks, export."""

import textwrap

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle: preloads the system zlib)

# isort: split
import paddle
import paddle.vision.models as pvm

from robust_paddle.errors import ConfigError
from robust_paddle.models import MODELS, VISION_FACTORIES, build_model, has_feature_split

# Small widths keep the ResNets fast; the architecture is the same at every width.
SMALL = {"mlp": {"hidden": [16]}, "small_cnn": {"channels": [4, 8, 8]}, "resnet18_cifar": {"width": 4},
         "resnet34_cifar": {"width": 4}, "preact_resnet18": {"width": 4}}
SHAPES = {
    "mlp": [(1, 8, 8), (3, 32, 32), (20,)],
    "small_cnn": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "resnet18_cifar": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "resnet34_cifar": [(1, 8, 8), (3, 32, 32)],
    "preact_resnet18": [(1, 28, 28), (3, 32, 32)],
}
CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]


def batch(shape, n=3, seed=0):
    return paddle.to_tensor(np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32"))


def test_every_registry_entry_is_tested():
    from robust_paddle.models.text import TEXT_MODELS

    # the text models (token ids in) are tested over every entry in tests/text/test_text_models.py
    assert set(MODELS.names()) == set(SHAPES) | set(TEXT_MODELS)


@pytest.mark.parametrize("name,shape", CASES)
def test_logits_shape_and_feature_split(name, shape):
    model = build_model(name, num_classes=7, input_shape=shape, **SMALL[name])
    model.eval()
    x = batch(shape)
    logits = model(x)
    assert logits.shape == [3, 7]
    feats = model.forward_features(x)
    assert feats.shape == [3, model.feature_dim]
    np.testing.assert_allclose(model.classifier(feats).numpy(), logits.numpy(), rtol=1e-6)
    assert has_feature_split(model)


@pytest.mark.parametrize("name", ["mlp", "small_cnn"])  # default-width ResNets: test_documented_sizes
def test_default_widths_build(name):
    shape = SHAPES[name][-1]
    model = build_model(name, num_classes=10, input_shape=shape)
    assert model(batch(shape, n=2)).shape == [2, 10]


def test_documented_sizes():
    def count(m):
        return sum(int(p.size) for p in m.parameters() if not p.stop_gradient)

    r18 = build_model("resnet18_cifar", num_classes=10, input_shape=(3, 32, 32))
    pre = build_model("preact_resnet18", num_classes=10, input_shape=(3, 32, 32))
    assert r18.feature_dim == pre.feature_dim == 512
    # Kuang Liu's CIFAR ResNet-18 (the usual reference) has 11,173,962 trainable parameters.
    assert count(r18) == 11_173_962
    # DivideMix's PreResNet18: pre-activation BN sees the block input width; projections have no BN.
    assert count(pre) == 11_173_962 - 2 * (64 + 128 + 256) - 2 * (128 + 256 + 512)


def test_preact_block_shortcut_reads_the_preactivated_input():
    """DivideMix's PreActBlock: out = conv2(...) + shortcut(relu(bn1(x))); zero convs leave relu(bn1(x))."""
    from robust_paddle.models.resnet import PreActBlock

    block = PreActBlock(4, 4)
    block.eval()
    for conv in (block.conv1, block.conv2):
        conv.weight.set_value(np.zeros(conv.weight.shape, dtype="float32"))
    x = batch((4, 5, 5))
    np.testing.assert_allclose(block(x).numpy(), np.maximum(x.numpy() / np.sqrt(1 + 1e-5), 0), rtol=1e-5)


def test_dropout_lives_in_the_classifier():
    model = build_model("small_cnn", num_classes=3, input_shape=(1, 8, 8), dropout=0.5)
    assert isinstance(model.classifier, paddle.nn.Sequential)
    model.eval()
    x = batch((1, 8, 8))
    np.testing.assert_allclose(model(x).numpy(), model.classifier(model.forward_features(x)).numpy(), rtol=1e-6)


# -------------------------------------------------------------------------------------- paddle.vision
def test_vision_name_matches_the_paddle_network():
    model = build_model("resnet18", num_classes=5, input_shape=(3, 32, 32))
    ref = pvm.resnet18(num_classes=5)
    assert model.feature_dim == 512 and model(batch((3, 32, 32), n=2)).shape == [2, 5]
    assert sum(int(p.size) for p in model.parameters()) == sum(int(p.size) for p in ref.parameters())
    assert has_feature_split(model)


def test_vision_params_are_passed_and_checked():
    small = build_model("mobilenet_v2", num_classes=4, input_shape=(3, 32, 32), scale=0.25)
    assert small.feature_dim == 1280 and small(batch((3, 32, 32), n=2)).shape == [2, 4]
    with pytest.raises(ValueError, match="model.params.*mobilenet_v2"):
        build_model("mobilenet_v2", num_classes=4, input_shape=(3, 32, 32), depth=3)
    with pytest.raises(ValueError, match="model.params.pretrained: not accepted"):
        build_model("resnet18", num_classes=4, input_shape=(3, 32, 32), pretrained=True)


def test_vision_input_checks():
    with pytest.raises(ValueError, match=r"model 'resnet18': input_shape \(1, 28, 28\) has 1 channels; allowed: 3"):
        build_model("resnet18", num_classes=4, input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match=r"model 'alexnet' cannot take input_shape \(3, 32, 32\)"):
        build_model("alexnet", num_classes=4, input_shape=(3, 32, 32))


def test_vision_table_holds_only_public_factories():
    for name, fn in VISION_FACTORIES.items():
        assert name in pvm.__all__ and fn is vars(pvm)[name]
    assert "squeezenet1_0" not in VISION_FACTORIES and "googlenet" not in VISION_FACTORIES


# ------------------------------------------------------------------------------------- user factories
USER_MODULE = '''
import paddle


class Tiny(paddle.nn.Layer):
    def __init__(self, num_classes, input_shape, width):
        super().__init__()
        self.seen = (num_classes, tuple(input_shape), width)
        self.fc = paddle.nn.Linear(int(paddle.to_tensor(input_shape).prod()), num_classes)

    def forward(self, x):
        return self.fc(paddle.flatten(x, 1))


def make(num_classes, input_shape, width=2):
    return Tiny(num_classes, input_shape, width)


def not_a_layer(num_classes, input_shape):
    return "nope"
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "rp_user_models.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "rp_user_models"


def test_user_factory_is_called_with_the_contract(user_module):
    model = build_model(f"{user_module}:make", num_classes=3, input_shape=(1, 4, 4), width=9)
    assert model.seen == (3, (1, 4, 4), 9)
    assert model(batch((1, 4, 4))).shape == [3, 3]
    assert not has_feature_split(model)


def test_user_factory_errors(user_module):
    with pytest.raises(ValueError, match="model.name: cannot import module 'rp_no_such_module'"):
        build_model("rp_no_such_module:make", num_classes=3, input_shape=(4,))
    with pytest.raises(ValueError, match=f"model.name: module '{user_module}' has no callable 'missing'"):
        build_model(f"{user_module}:missing", num_classes=3, input_shape=(4,))
    with pytest.raises(ConfigError, match="returned str, expected a paddle.nn.Layer"):
        build_model(f"{user_module}:not_a_layer", num_classes=3, input_shape=(4,))
    with pytest.raises(ValueError, match="is not a 'package.module:function' path"):
        build_model("a.b:c:d", num_classes=3, input_shape=(4,))


# --------------------------------------------------------------------------------------------- checks
def test_unknown_name_lists_registry_and_other_forms():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'; registered: bigru_attention, bilstm_attention, "
                                         r"ernie, mlp, preact_resnet18, resnet18_cifar, resnet34_cifar, small_cnn, textcnn, "
                                         r"transformer; also accepted: "
                                         r"paddle.vision.models names .*'pkg.mod:fn'"):
        build_model("resnet9000", num_classes=3, input_shape=(3, 32, 32))


def test_unknown_params_name_the_field():
    with pytest.raises(ValueError, match=r"model.params: unknown key\(s\) depth for model 'small_cnn'; "
                                         r"allowed: .*channels, convs_per_stage, dropout"):
        build_model("small_cnn", num_classes=3, input_shape=(1, 8, 8), depth=3)


@pytest.mark.parametrize("name,shape,params,match", [
    ("small_cnn", (2, 8, 8), {}, r"has 2 channels; allowed: 1, 3"),
    ("small_cnn", (8, 8), {}, r"input_shape must be \(channels, height, width\)"),
    ("resnet18_cifar", (3, 4, 4), {}, "smaller than 8x8"),
    ("mlp", (4,), {"dropout": 1.0}, r"^model.params.dropout: 1.0 is out of range; must be < 1.0 and >= 0.0$"),
    ("mlp", (4,), {"hidden": [0]}, r"^model.params.hidden\[0\]: 0 is out of range; must be >= 1$"),
    ("small_cnn", (1, 8, 8), {"channels": []}, r"^model.params.channels: \[\] is too short; needs at least 1 item\(s\)$"),
    ("small_cnn", (1, 8, 8), {"convs_per_stage": 0}, r"^model.params.convs_per_stage: 0 is out of range; must be >= 1$"),
    ("preact_resnet18", (3, 32, 32), {"width": 0}, r"^model.params.width: 0 is out of range; must be >= 1$"),
    ("mlp", (0, 3), {}, "input_shape: expected a non-empty tuple of positive ints"),
])
def test_bad_inputs(name, shape, params, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, num_classes=3, input_shape=shape, **params)


def test_num_classes_checked():
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        build_model("mlp", num_classes=1, input_shape=(4,))


# --------------------------------------------------------------------------------------------- export
EXPORT_CASES = [(name, SHAPES[name][0], SMALL[name]) for name in sorted(SHAPES)]
EXPORT_CASES.append(("shufflenet_v2_x0_25", (3, 32, 32), {}))  # one paddle.vision network


@pytest.mark.parametrize("name,shape,params", EXPORT_CASES)
def test_to_static_save_load_round_trip(name, shape, params, tmp_path):
    model = build_model(name, num_classes=4, input_shape=shape, **params)
    model.eval()
    x = batch(shape, n=2)
    want = model(x).numpy()
    spec = [paddle.static.InputSpec([None, *shape], "float32", name="x")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    prefix = str(tmp_path / "model")
    paddle.jit.save(static, prefix)
    loaded = paddle.jit.load(prefix)
    np.testing.assert_allclose(loaded(x).numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded(batch(shape, n=5, seed=1)).numpy(), model(batch(shape, n=5, seed=1)).numpy(),
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------- accuracy
@pytest.mark.slow
def test_small_cnn_learns_digits():
    """Clean sklearn digits, 20 epochs of SGD + cosine: the small CNN reaches >= 97% test accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from robust_paddle.config import OptimizerConfig, SchedulerConfig
    from robust_paddle.optim import build_optimizer, build_scheduler

    paddle.seed(0)
    rng = np.random.default_rng(0)
    X, y = load_digits(return_X_y=True)
    X = ((X / 16.0 - 0.5) / 0.5).reshape(-1, 1, 8, 8).astype("float32")
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    model = build_model("small_cnn", num_classes=10, input_shape=(1, 8, 8))
    epochs, bs = 20, 64
    spe = -(-len(Xtr) // bs)
    sched = build_scheduler(SchedulerConfig(name="cosine"), base_lr=0.05, epochs=epochs, steps_per_epoch=spe)
    opt = build_optimizer(OptimizerConfig(name="sgd"), model.parameters(), learning_rate=sched)
    for _ in range(epochs):
        model.train()
        perm = rng.permutation(len(Xtr))
        for i in range(spe):
            idx = perm[i * bs:(i + 1) * bs]
            logits = model(paddle.to_tensor(Xtr[idx]))
            paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(ytr[idx])).backward()
            opt.step()
            opt.clear_grad()
            sched.step()
    model.eval()
    with paddle.no_grad():
        acc = float((model(paddle.to_tensor(Xte)).argmax(1).numpy() == yte).mean())
    assert acc >= 0.97
