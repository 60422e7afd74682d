"""The files of a local PaddleNLP ERNIE model directory: checks, its vocabulary and tokenizer settings.

A directory written by PaddleNLP's ``save_pretrained`` (model and tokenizer) holds:

* ``config.json``: the architecture (``ErnieConfig``: hidden size, layers, heads, vocabulary size, pad id ...);
* ``model.safetensors`` or ``model_state.pdparams``: the weights (read without running code, see
  :mod:`robust_paddle.models.ernie`), or, sharded, ``model.safetensors.index.json`` /
  ``model_state.pdparams.index.json`` naming its shard files in the same directory;
* ``vocab.txt``: one WordPiece token per line, the id is the line number (0-based);
* ``tokenizer_config.json`` (optional): ``do_lower_case`` and the special tokens (``[UNK]``, ``[PAD]``,
  ``[CLS]``, ``[SEP]``, ``[MASK]`` when absent, PaddleNLP's ``ErnieTokenizer`` defaults).

Nothing is ever downloaded: a path that is not such a local directory is one error naming the setting and the
files expected. Used by the ``ernie`` tokenizer (``robust_paddle.data.tokenize``) and the ``ernie`` model.
"""

from __future__ import annotations

import json
import os
from typing import Any

from robust_paddle.errors import ConfigError

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model_state.pdparams")  # PaddleNLP's SAFE_WEIGHTS_NAME, PADDLE_WEIGHTS_NAME

#: sharded weights (``save_pretrained(max_shard_size=...)``): an index ``{"weight_map": {key: shard file}}``
INDEX_SUFFIX = ".index.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
#: PaddleNLP ``ErnieTokenizer`` defaults (paddlenlp/transformers/ernie/tokenizer.py)
SPECIAL_DEFAULTS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                    "mask_token": "[MASK]"}
EXPECTED = (f"a local PaddleNLP model directory (save_pretrained) with {CONFIG_FILE}, {WEIGHT_FILES[0]} or "
            f"{WEIGHT_FILES[1]} (or its sharded {INDEX_SUFFIX} + shards), and {VOCAB_FILE} (optional "
            f"{TOKENIZER_CONFIG_FILE}); nothing is downloaded")


def model_dir_files(path: str, *, field: str = "model.params.path", weights: bool = True) -> dict[str, str]:
    """``{"config", "weights", "vocab", "tokenizer_config"}`` -> file paths in the model directory ``path``
    (``weights`` / ``tokenizer_config`` absent when not asked for / not there).

    Raises:
        ConfigError: ``path`` is empty, not a local directory, or lacks a file; the message names ``field``
            and the files expected.
    """
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{field}: not set; expected {EXPECTED}")
    if not os.path.isdir(path):
        raise ConfigError(f"{field}: {path!r} is not a local directory; expected {EXPECTED}")
    out = {"config": os.path.join(path, CONFIG_FILE), "vocab": os.path.join(path, VOCAB_FILE)}
    missing = [os.path.basename(p) for p in out.values() if not os.path.isfile(p)]
    if weights:
        found = [os.path.join(path, f + suffix) for suffix in ("", INDEX_SUFFIX) for f in WEIGHT_FILES
                 if os.path.isfile(os.path.join(path, f + suffix))]
        if found:
            out["weights"] = found[0]
        else:
            missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise ConfigError(f"{field}: {path} lacks {', '.join(missing)}; expected {EXPECTED}")
    tc = os.path.join(path, TOKENIZER_CONFIG_FILE)
    if os.path.isfile(tc):
        out["tokenizer_config"] = tc
    return out


def read_json(path: str, *, field: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``ConfigError`` naming ``field`` and the file otherwise."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{field}: cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{field}: {path} holds a {type(data).__name__}, expected a JSON object")
    return data


def read_vocab(path: str, *, field: str) -> list[str]:
    """The tokens of ``vocab.txt`` (id = line number). Raises ConfigError for an empty file or a repeated token."""
    try:
        with open(path, encoding="utf-8") as fh:
            vocab = [line.rstrip("\r\n") for line in fh]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{field}: cannot read {path}: {e}") from None
    if not vocab:
        raise ConfigError(f"{field}: {path} is empty")
    seen: dict[str, int] = {}
    for i, tok in enumerate(vocab):
        if tok in seen:
            raise ConfigError(f"{field}: {path}:{i + 1}: token {tok!r} repeats line {seen[tok] + 1}")
        seen[tok] = i
    return vocab


def tokenizer_settings(path: str, *, field: str) -> dict[str, Any]:
    """``do_lower_case`` and the special tokens of the model directory ``path`` (``tokenizer_config.json`` over
    PaddleNLP's ``ErnieTokenizer`` defaults); the vocabulary must hold every special token."""
    files = model_dir_files(path, field=field, weights=False)
    cfg = read_json(files["tokenizer_config"], field=field) if "tokenizer_config" in files else {}
    out: dict[str, Any] = {"do_lower_case": bool(cfg.get("do_lower_case", True))}
    for key, default in SPECIAL_DEFAULTS.items():
        value = cfg.get(key, default)
        if isinstance(value, dict):  # the AddedToken form {"content": "[UNK]", ...}
            value = value.get("content", default)
        out[key] = str(value)
    return out


def shard_files(index: str, *, field: str) -> list[str]:
    """The shard files a sharded-weights index (``*.index.json``) names, as paths beside it, in first-use order.

    Raises:
        ConfigError: not an index (no ``weight_map`` of file names), a name that leaves the directory, a
            missing shard.
    """
    weight_map = read_json(index, field=field).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ConfigError(f"{field}: {index} has no weight_map of {{weight name: shard file}}")
    names = list(dict.fromkeys(weight_map.values()))
    folder = os.path.dirname(index)
    bad = [n for n in names if os.path.basename(n) != n or n in (".", "..")]
    if bad:
        raise ConfigError(f"{field}: {index} names shard(s) outside its directory: {', '.join(bad[:3])}")
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise ConfigError(f"{field}: {index} names missing shard(s): {', '.join(missing[:3])}")
    return [os.path.join(folder, n) for n in names]
