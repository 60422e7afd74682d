"""ERNIE (PaddleNLP) as a text classifier over token ids ``[N, L]`` int64; registered in ``MODELS`` as ``ernie``.

``model.params.path`` is a local PaddleNLP model directory (``save_pretrained``: ``config.json``, the weights,
``vocab.txt``; see :mod:`robust_paddle.data.ernie_files`). The network is PaddleNLP's ``ErnieModel`` built from
``config.json``; its weights are read by the toolkit's own loader (``engine.checkpoint.load_weights``: a
``.safetensors`` file, or a ``.pdparams`` pickle through an allow-listed unpickler), never by ``paddle.load`` or
``from_pretrained``, so a weights file cannot run code, and nothing is downloaded. The classifier (a linear
layer on the pooled feature) is new. The run's tokenizer must be ``data.text.tokenizer: ernie`` (the same
``vocab.txt``; rows ``[CLS] a [SEP]``, checked here against the model's vocabulary).

Features (``forward_features``, ``feature_dim`` = hidden size): ``pooling: cls`` is ERNIE's pooler (dense +
tanh on the ``[CLS]`` state, what ``ErnieForSequenceClassification`` classifies), ``mean`` the mean of the last
hidden states over the real tokens; then dropout. ``embedding_split`` / ``embed`` expose the word embeddings
(before ERNIE adds position / token-type embeddings and normalises) for FGM / PGD (Miyato et al. 2017,
arXiv:1605.07725), so mixup on features, R-Drop and every robust method work as on the other text models.
Padding (the vocabulary's pad id) is masked in attention; the mask, the position ids and the token types
(0 up to the first ``[SEP]``, 1 after it, for sentence pairs) are computed from the ids inside the network, so
the exported program takes the ids alone.

Sliding windows (``data.text.window_length`` = w > 0): the ``L - 1`` tokens after ``[CLS]`` are cut into
windows of ``w - 1`` tokens every ``window_stride`` tokens, each encoded as ``[CLS]`` + its tokens (w
positions; the ``[SEP]`` stays where the tokenizer put it, in the last window); a window that starts with
padding is ignored; ``mean`` averages the window features (= the mean of the window logits), ``max`` takes
their element-wise max, as in :mod:`robust_paddle.models.text`.

Source: Sun et al. 2019, "ERNIE: Enhanced Representation through Knowledge Integration",
https://arxiv.org/abs/1904.09223; Sun et al. 2021, "ERNIE 3.0", https://arxiv.org/abs/2107.02137.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import paddle
from paddle import nn

from robust_paddle.data.ernie_files import (
    INDEX_SUFFIX,
    model_dir_files,
    read_json,
    read_vocab,
    shard_files,
    tokenizer_settings,
)
from robust_paddle.errors import CheckpointError, ConfigError, MissingDependencyError
from robust_paddle.models.base import FeatureClassifier, check_num_classes
from robust_paddle.models.text import NEG_INF, window_starts
from robust_paddle.registry import MODELS
from robust_paddle.schema import param

logger = logging.getLogger(__name__)
FIELD = "model.params.path"


def import_paddlenlp() -> Any:
    """``paddlenlp.transformers`` (ErnieConfig, ErnieModel). Raises MissingDependencyError naming the extra."""
    try:
        import paddlenlp.transformers as transformers
    except ImportError as e:  # also a paddlenlp that fails to import against this Paddle
        raise MissingDependencyError(f"model.name ernie needs PaddleNLP, which does not import ({e}); install "
                                     "it with: pip install -e .[ernie]") from None
    return transformers


def load_backbone_weights(backbone: nn.Layer, path: str) -> int:
    """Copy the weights file ``path`` (``model.safetensors`` / ``model_state.pdparams``, or a sharded index
    ``*.index.json``: its shards) into ``backbone`` (an ``ErnieModel``); file keys may carry the ``ernie.`` prefix of PaddleNLP's task models (whose heads are
    ignored). Returns the number of tensors loaded.

    Raises:
        CheckpointError: unsafe or unreadable file, a missing backbone weight, a weight of another shape.
    """
    from robust_paddle.engine.checkpoint import load_weights

    if path.endswith(INDEX_SUFFIX):  # sharded: every shard through the same safe reader
        weights = {}
        for shard in shard_files(path, field=FIELD):
            weights.update(load_weights(shard))
    else:
        weights = load_weights(path)
    missing, bad, state = [], [], {}
    for key, tensor in backbone.state_dict().items():
        found = next((k for k in (key, f"ernie.{key}") if k in weights), None)
        if found is None:
            missing.append(key)
            continue
        arr = np.asarray(weights[found])
        if list(arr.shape) != [int(s) for s in tensor.shape]:
            bad.append(f"{key} {list(tensor.shape)} vs {list(arr.shape)}")
            continue
        state[key] = arr
    if missing or bad:
        raise CheckpointError(f"{path}: does not fit {FIELD}'s config.json: {len(missing)} weight(s) missing "
                              f"({', '.join(missing[:4])}), {len(bad)} of another shape ({'; '.join(bad[:3])})")
    target = backbone.state_dict()
    for key, arr in state.items():
        target[key].set_value(arr.astype(np.dtype(str(target[key].numpy().dtype)), copy=False))
    return len(state)


@MODELS.register("ernie")
class ErnieClassifier(FeatureClassifier):
    """PaddleNLP ERNIE + pooling + dropout + linear classifier (see the module doc).

    Args:
        num_classes: C. input_shape: ``(L,)``. vocab_size, pad_id, vocab: from the run's tokenizer (must be the
            model directory's vocabulary). window_length, window_stride, window_aggregate: ``data.text``.
        path, pooling, dropout, freeze_embeddings, freeze_layers: ``model.params`` (see ``Params``).

    Raises:
        ConfigError: bad ``path`` (names ``model.params.path`` and the files expected), a tokenizer that is not
            this model's vocabulary, rows longer than ``max_position_embeddings``.
        MissingDependencyError: PaddleNLP does not import. CheckpointError: unsafe / mismatched weights.
    """

    @dataclasses.dataclass(frozen=True)
    class Params:
        path: str = param("", doc="local PaddleNLP model directory: config.json, model.safetensors or "
                                  "model_state.pdparams, vocab.txt (never downloaded)")
        pooling: str = param("cls", choices=("cls", "mean"), doc="cls: ERNIE's pooler on [CLS]; mean: mean of the "
                                                                 "last hidden states over the real tokens")
        dropout: float = param(0.1, min=0.0, max=1.0, max_open=True, doc="dropout before the classifier")
        freeze_embeddings: bool = param(False, doc="keep the embedding layer (word, position, type) fixed")
        freeze_layers: int = param(0, min=0, doc="keep the lowest N encoder layers fixed (with the embeddings "
                                                 "when N > 0)")

    paper = "Sun et al. 2019, arXiv:1904.09223 (ERNIE); Sun et al. 2021, arXiv:2107.02137 (ERNIE 3.0)"

    def __init__(self, *, num_classes: int, input_shape: Sequence[int], vocab_size: int, pad_id: int = 0,
                 vocab: Sequence[str] | None = None, window_length: int = 0, window_stride: int = 0,
                 window_aggregate: str = "mean", path: str = "", pooling: str = "cls", dropout: float = 0.1,
                 freeze_embeddings: bool = False, freeze_layers: int = 0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes, model="ernie")
        if len(input_shape) != 1:
            raise ConfigError(f"model 'ernie': takes token ids [N, L]; input_shape {tuple(input_shape)} is not (L,) "
                              "(use a text source with data.text.tokenizer: ernie)")
        if window_aggregate not in ("mean", "max"):
            raise ConfigError(f"data.text.window_aggregate: {window_aggregate!r}; choose mean or max")
        files = model_dir_files(path, field=FIELD)  # before the import: a bad path is named even without PaddleNLP
        transformers = import_paddlenlp()
        config = transformers.ErnieConfig.from_dict(read_json(files["config"], field=FIELD))
        own_vocab = read_vocab(files["vocab"], field=FIELD)
        special = tokenizer_settings(path, field=FIELD)
        if vocab is not None and list(vocab) != own_vocab:
            raise ConfigError(f"{FIELD}: the run's tokenizer is not this model's vocabulary ({len(vocab)} vs "
                              f"{len(own_vocab)} tokens in {files['vocab']}); set data.text.tokenizer: ernie with "
                              "data.text.vocab_path empty or the same directory")
        if int(vocab_size) > int(config.vocab_size) or int(pad_id) != int(config.pad_token_id):
            raise ConfigError(f"{FIELD}: config.json has vocab_size {config.vocab_size} and pad_token_id "
                              f"{config.pad_token_id}; the tokenizer has {vocab_size} tokens and pad id {pad_id}")
        self.input_shape = (int(input_shape[0]),)
        length = self.input_shape[0]
        self.pad_id, self.window_aggregate = int(pad_id), window_aggregate
        self.sep_id = own_vocab.index(special["sep_token"])
        # windows over the L - 1 tokens after [CLS]; each window row is [CLS] + (w - 1) tokens
        starts = window_starts(length - 1, int(window_length) - 1, int(window_stride)) if window_length > 1 else [0]
        self.starts = starts if len(starts) > 1 else [0]
        self.window = length if len(self.starts) == 1 else int(window_length)
        if self.window > int(config.max_position_embeddings):
            raise ConfigError(f"data.text.max_length / window_length: rows of {self.window} tokens exceed the "
                              f"model's max_position_embeddings ({config.max_position_embeddings})")
        self.ernie = transformers.ErnieModel(config)
        n = load_backbone_weights(self.ernie, files["weights"])
        logger.info("ernie: %d backbone tensors loaded from %s (%d layers, hidden %d, vocab %d)", n,
                    files["weights"], config.num_hidden_layers, config.hidden_size, config.vocab_size)
        self.pooling = pooling
        self.feature_dim = int(config.hidden_size)
        self.dropout = nn.Dropout(float(dropout))
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)
        if int(freeze_layers) > int(config.num_hidden_layers):
            raise ConfigError(f"model.params.freeze_layers: {freeze_layers} > the model's {config.num_hidden_layers} "
                              "encoder layers")
        frozen = list(self.ernie.embeddings.parameters()) if freeze_embeddings or freeze_layers else []
        for layer in list(self.ernie.encoder.layers)[:int(freeze_layers)]:
            frozen += list(layer.parameters())
        for p in frozen:
            p.stop_gradient = True

    # --------------------------------------------------------------------------------------- features
    def embed(self, ids: paddle.Tensor) -> paddle.Tensor:
        """Word embeddings ``[N, L, H]`` of ids ``[N, L]`` (what FGM / PGD perturb)."""
        return self.ernie.embeddings.word_embeddings(ids)

    def token_types(self, ids: paddle.Tensor) -> paddle.Tensor:
        """``[N, L]`` int64: 0 up to and including the first ``[SEP]``, 1 after it (the second text of a pair)."""
        sep = (ids == self.sep_id).astype("int64")
        return (paddle.cumsum(sep, axis=1) - sep > 0).astype("int64")

    def encode(self, emb: paddle.Tensor, ids: paddle.Tensor, types: paddle.Tensor) -> paddle.Tensor:
        """Rows ``[B', w]`` (embeddings [B', w, H], ids, token types) -> pooled features ``[B', H]``."""
        mask = (ids != self.pad_id).astype(emb.dtype)  # [B', w]
        attn = ((mask - 1.0) * -NEG_INF).unsqueeze(1).unsqueeze(1)  # [B', 1, 1, w] additive
        attn.stop_gradient = True
        pos = paddle.arange(ids.shape[1], dtype="int64").unsqueeze(0)  # [1, w]: broadcast over the rows
        seq, pooled = self.ernie(input_ids=None, token_type_ids=types, position_ids=pos, attention_mask=attn,
                                 inputs_embeds=emb, return_dict=False)[:2]
        if self.pooling == "cls":
            return pooled
        m = mask.unsqueeze(-1)
        # masked mean over tokens written with means (the length cancels; no sum op, see models/text.py)
        return paddle.mean(seq * m, axis=1) / paddle.clip(paddle.mean(m, axis=1), min=1.0 / ids.shape[1])

    def features_from_embeddings(self, emb: paddle.Tensor, ids: paddle.Tensor) -> paddle.Tensor:
        """Word embeddings [N, L, H] (possibly perturbed) + ids [N, L] -> features [N, H] (windows pooled)."""
        types = self.token_types(ids)
        if len(self.starts) == 1:
            return self.encode(emb, ids, types)
        w, n_win = self.window - 1, len(self.starts)

        def rows(t: paddle.Tensor) -> paddle.Tensor:  # [N, L, ...] -> [N * W, w + 1, ...]: [CLS] + window
            parts = [paddle.concat([t[:, :1], t[:, 1 + s:1 + s + w]], axis=1) for s in self.starts]
            out = paddle.stack(parts, axis=1)
            return out.reshape([-1, w + 1] + list(t.shape[2:]))

        feats = self.encode(rows(emb), rows(ids), rows(types))
        first = paddle.stack([ids[:, 1 + s] for s in self.starts], axis=1)  # [N, W] first token of each window
        valid = (first != self.pad_id).astype(feats.dtype)
        valid = paddle.concat([paddle.ones_like(valid[:, :1]), valid[:, 1:]], axis=1)  # the first always counts
        f = feats.reshape([-1, n_win, feats.shape[-1]])
        v = valid.unsqueeze(-1)
        if self.window_aggregate == "mean":
            return paddle.mean(f * v, axis=1) / paddle.mean(v, axis=1)
        return paddle.max(f + (v - 1.0) * 1e4, axis=[1])

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        """ids [N, L] int64 -> features [N, feature_dim] (windows pooled, then dropout)."""
        return self.dropout(self.features_from_embeddings(self.embed(x), x))

    def embedding_split(self, x: paddle.Tensor, *, mix: Callable[[paddle.Tensor], paddle.Tensor] | None = None
                        ) -> tuple[paddle.Tensor, Callable[[paddle.Tensor], paddle.Tensor]]:
        """``(word embeddings [N, L, H], head)`` with ``head(e) = classifier(mix(dropout(features(e, x))))``;
        ``head(embed(x)) == forward(x)`` without ``mix`` (the contract of ``TextClassifier.embedding_split``)."""
        mix = mix or (lambda f: f)
        return self.embed(x), lambda e: self.classifier(mix(self.dropout(self.features_from_embeddings(e, x))))
