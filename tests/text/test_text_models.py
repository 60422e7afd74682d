"""Text models: shapes, the feature split, padding, sliding windows, pretrained embeddings, text training steps."""

import numpy as np
import paddle
import pytest

from robust_paddle.models import build_model
from robust_paddle.models.text import TEXT_MODELS, load_pretrained_embeddings, window_starts

V, L = 30, 12
SMALL = {"textcnn": {"kernel_sizes": [2, 3], "num_filters": 4}, "bigru_attention": {"hidden_size": 8},
         "bilstm_attention": {"hidden_size": 8}, "transformer": {"num_heads": 2, "ffn_dim": 16, "num_layers": 1}}


def _ids(seed=0, n=5, lengths=(12, 7, 3, 9, 1)):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, L), np.int64)
    for i, k in enumerate(lengths[:n]):
        x[i, :k] = rng.integers(3, V, size=k)
    return paddle.to_tensor(x)


def _model(name, **kw):
    paddle.seed(0)
    net = build_model(name, num_classes=3, input_shape=(L,), vocab_size=V, pad_id=0, embed_dim=8,
                      **SMALL[name], **kw)
    net.eval()
    return net


#: every text model but ernie, which needs paddlenlp and a local model folder (tests/text/test_ernie.py)
LOCAL_TEXT_MODELS = [m for m in TEXT_MODELS if m != "ernie"]


@pytest.mark.parametrize("name", LOCAL_TEXT_MODELS)
def test_feature_split_and_embedding_split(name):
    net, x = _model(name), _ids()
    logits = net(x)
    assert logits.shape == [5, 3]
    np.testing.assert_allclose(net.classifier(net.forward_features(x)).numpy(), logits.numpy(), atol=1e-6)
    base, head = net.embedding_split(x)
    assert base.shape == [5, L, 8]
    np.testing.assert_allclose(head(base).numpy(), logits.numpy(), atol=1e-6)


@pytest.mark.parametrize("name", LOCAL_TEXT_MODELS)
def test_padding_positions_do_not_matter(name):
    """The embedding row of the pad id is ignored: changing it leaves every prediction unchanged."""
    net, x = _model(name), _ids()
    before = net(x).numpy()
    w = net.embedding.weight.numpy()
    w[0] = 5.0
    net.embedding.weight.set_value(w)
    np.testing.assert_allclose(net(x).numpy(), before, atol=1e-5)


def test_window_starts():
    assert window_starts(12, 0, 0) == [0]
    assert window_starts(12, 6, 3) == [0, 3, 6]
    assert window_starts(12, 5, 4) == [0, 4, 7]  # the last window ends at L
    assert window_starts(12, 12, 4) == [0]


@pytest.mark.parametrize("name", ["textcnn", "transformer"])
def test_mean_windows_average_the_window_logits(name):
    net = _model(name, window_length=6, window_stride=3)
    ref = _model(name)  # same weights (same seed) but one window of 6 tokens per call
    one = build_model(name, num_classes=3, input_shape=(6,), vocab_size=V, pad_id=0, embed_dim=8, **SMALL[name])
    one.set_state_dict(net.state_dict())
    one.eval()
    del ref
    x = _ids(lengths=(12, 7, 3, 9, 1))
    got = net(x).numpy()
    for i, length in enumerate((12, 7, 3, 9, 1)):
        wins = [x[i:i + 1, s:s + 6] for s in (0, 3, 6) if s == 0 or s < length]
        want = np.mean([one(w).numpy() for w in wins], axis=0)
        np.testing.assert_allclose(got[i:i + 1], want, atol=1e-5)


def test_max_windows_and_bad_settings():
    net = _model("textcnn", window_length=6, window_stride=3, window_aggregate="max")
    assert net(_ids()).shape == [5, 3]
    with pytest.raises(ValueError, match="kernel_sizes"):
        build_model("textcnn", num_classes=2, input_shape=(L,), vocab_size=V, kernel_sizes=[20])
    with pytest.raises(ValueError, match="takes token ids"):
        build_model("textcnn", num_classes=2, input_shape=(1, 8, 8), vocab_size=V)


def test_pretrained_embeddings(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[SEP]", "好", "差"]
    f = tmp_path / "w2v.txt"
    f.write_text("2 3\n好 1 2 3\n其他 4 5 6\n", encoding="utf-8")
    vec, found = load_pretrained_embeddings(str(f), vocab, 3)
    assert found.tolist() == [False, False, False, True, False] and vec[3].tolist() == [1, 2, 3]
    np.savez(tmp_path / "e.npz", tokens=np.array(["差"]), vectors=np.array([[7.0, 8.0, 9.0]]))
    net = build_model("textcnn", num_classes=2, input_shape=(8,), vocab_size=5, vocab=vocab, embed_dim=3,
                      kernel_sizes=[2], num_filters=2, pretrained_embeddings=str(tmp_path / "e.npz"),
                      freeze_embeddings=True)
    assert net.embedding.weight.numpy()[4].tolist() == [7, 8, 9] and net.embedding.weight.stop_gradient
    f.write_text("好 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"w2v.txt:1: expected a token and 3 numbers"):
        load_pretrained_embeddings(str(f), vocab, 3)


def test_textcnn_features_are_kims_masked_max_over_relu():
    """TextCNN pools relu(max) (cheaper); the value equals max over the real tokens of relu(conv), 0 without tokens."""
    paddle.seed(3)
    net = build_model("textcnn", num_classes=2, input_shape=(10,), vocab_size=30, embed_dim=6, num_filters=4,
                      kernel_sizes=[2, 3])
    net.eval()
    ids = np.random.default_rng(0).integers(1, 30, (3, 10))
    ids[1, 4:] = 0
    ids[2, :] = 0  # no token at all
    emb = net.embedding(paddle.to_tensor(ids)).numpy()
    mask = (ids != 0).astype("float32")
    emb = emb * mask[..., None]
    got = net.encode(paddle.to_tensor(emb), paddle.to_tensor(mask)).numpy()
    want = []
    for k, conv in zip(net.kernel_sizes, net.convs):
        w, b = conv.weight.numpy(), conv.bias.numpy()  # [F, E, k], [F]
        t_out = 10 - k + 1
        h = np.stack([np.einsum("bke,fek->bf", emb[:, t:t + k], w) + b
                      for t in range(t_out)], axis=1)  # [B, T, F]
        h = np.maximum(h, 0.0)
        m = mask[:, :t_out, None]
        pooled = np.where(m.any(axis=1), np.max(np.where(m > 0, h, -np.inf), axis=1), 0.0)
        want.append(pooled)
    np.testing.assert_allclose(got, np.concatenate(want, axis=1), atol=1e-5)
    assert np.all(got[2] == 0.0)


def _conv_encode(net, emb, mask):
    """TextCNN's features through its nn.Conv1D layers (the three-kernel formulation the single product replaces)."""
    x, outs = emb.transpose([0, 2, 1]), []
    for k, conv in zip(net.kernel_sizes, net.convs):
        h = paddle.nn.functional.relu(conv(x))  # [B, F, w - k + 1]
        m = mask[:, :net.window - k + 1].unsqueeze(1)
        outs.append(paddle.max(h * m + (m - 1.0) * 1e4, axis=2) * paddle.max(mask, axis=1, keepdim=True))
    return paddle.concat(outs, axis=1)


@pytest.mark.parametrize("windows", [{}, {"window_length": 12, "window_stride": 6}])
def test_textcnn_single_product_equals_the_convolutions_with_gradients(windows):
    """Kim's sizes (E=128, 100 x {3, 4, 5}, widths in any order): the unfolded product gives the convolutions'
    features and the same gradients of every parameter (embedding, conv weights and biases, classifier)."""
    paddle.seed(5)
    length = 24
    net = build_model("textcnn", num_classes=2, input_shape=(length,), vocab_size=50, kernel_sizes=[4, 3, 5],
                      **windows)
    net.eval()  # no dropout: the two runs must see the same function
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 50, (4, length))
    ids[1, 9:] = 0
    ids[2, 3:] = 0  # shorter than the widest filter
    ids[3, :] = 0  # no token at all
    x = paddle.to_tensor(ids)
    y = paddle.to_tensor(np.array([0, 1, 1, 0]))
    grads = []
    for encode in (net.encode, lambda e, m: _conv_encode(net, e, m)):
        net.clear_gradients()
        net.encode = encode
        feats = net.features_from_embeddings(net.embed(x), x)
        loss = paddle.nn.functional.cross_entropy(net.classifier(feats), y)
        loss.backward()
        grads.append((feats.numpy(), {n: p.grad.numpy().copy() for n, p in net.named_parameters()}))
        del net.encode
    (f1, g1), (f2, g2) = grads
    np.testing.assert_allclose(f1, f2, atol=1e-5)
    assert np.all(f1[3] == 0.0) and f1.shape == (4, 300)
    assert set(g1) == set(g2) and len(g1) == 9  # embedding, 3 x (weight, bias), classifier weight and bias
    for name in g1:
        np.testing.assert_allclose(g1[name], g2[name], atol=1e-5, err_msg=name)
    with paddle.no_grad():  # the evaluation / export branch (paddle.max) gives the same features
        np.testing.assert_allclose(net.features_from_embeddings(net.embed(x), x).numpy(), f1, atol=1e-5)
