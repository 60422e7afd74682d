"""Tokenizers: vocabulary order, the long-text rule, pairs, save/load round trips for every kind."""

import json

import numpy as np
import pytest

from robust_paddle.data.tokenize import TextTokenizer, cut, fit_tokenizer
from robust_paddle.errors import CheckpointError, ConfigError

TEXTS = ["好好好很好", "差很差", "ＡＢＣ abc", "好差"]


def test_char_vocab_specials_first_then_by_frequency():
    tok = fit_tokenizer(TEXTS, kind="char", max_length=8)
    assert tok.vocab[:3] == ["[PAD]", "[UNK]", "[SEP]"]
    # NFKC + lowercase: full-width ABC counts with abc; spaces are dropped; 好 (5) before 差 (3) before 很 (2)
    assert tok.vocab[3:6] == ["好", "差", "很"]
    assert tok.tokens("ＡＢＣ x") == ["a", "b", "c", "x"]
    assert tok.pad_id == 0 and tok.unk_id == 1


def test_min_freq_and_vocab_size_cap():
    tok = fit_tokenizer(TEXTS, kind="char", min_freq=2, max_length=8)
    assert set(tok.vocab[3:]) == {"好", "差", "很", "a", "b", "c"}
    small = fit_tokenizer(TEXTS, kind="char", vocab_size=5, max_length=8)
    assert small.vocab == ["[PAD]", "[UNK]", "[SEP]", "好", "差"]
    assert list(small.encode("好很")[:3]) == [3, 1, 0]  # 很 is unknown in the small vocabulary


@pytest.mark.parametrize("rule,expected", [("head", [0, 1, 2, 3, 4]), ("tail", [5, 6, 7, 8, 9]),
                                           ("head_tail", [0, 1, 7, 8, 9])])
def test_truncation_rules(rule, expected):
    assert cut(list(range(10)), 5, truncation=rule, head_tokens=2) == expected
    assert cut([1, 2], 5, truncation=rule, head_tokens=2) == [1, 2]


def test_encode_pads_and_truncates_with_the_saved_rule():
    tok = fit_tokenizer(["abcdefghij"], kind="char", max_length=6, truncation="head_tail", head_tokens=2)
    ids = tok.encode("abcdefghij")
    assert [tok.vocab[i] for i in ids] == ["a", "b", "g", "h", "i", "j"]
    short = tok.encode("ab")
    assert short.dtype == np.int64 and list(short) == [tok.index["a"], tok.index["b"], 0, 0, 0, 0]


def test_pair_longer_part_shortened_first():
    tok = fit_tokenizer(["abcdefgh", "xy"], kind="char", max_length=7)
    ids = [tok.vocab[i] for i in tok.encode("abcdefgh", "xy")]
    assert ids == ["a", "b", "c", "d", "[SEP]", "x", "y"]
    ids = [tok.vocab[i] for i in tok.encode("abcdefgh", "xyxyxyxy")]
    assert ids == ["a", "b", "c", "[SEP]", "x", "y", "x"]


@pytest.mark.parametrize("kind", ["char", "jieba", "wordpiece", "bpe"])
def test_save_load_round_trip_gives_the_same_ids(kind, tmp_path):
    texts = ["我们觉得质量很好", "快递太慢了很失望", "价格便宜质量不错", "hello world the text"] * 5
    tok = fit_tokenizer(texts, kind=kind, vocab_size=300, max_length=12)
    path = tok.save(str(tmp_path))
    back = TextTokenizer.load(str(tmp_path))
    assert path.endswith("tokenizer.json") and back.vocab == tok.vocab and back.kind == kind
    np.testing.assert_array_equal(back.encode_batch(texts), tok.encode_batch(texts))
    assert tok.vocab[:3] == ["[PAD]", "[UNK]", "[SEP]"]


def test_jieba_gives_words():
    tok = fit_tokenizer(["我们觉得质量很好"], kind="jieba", max_length=8)
    assert "质量" in tok.tokens("质量很好") and "我们" in tok.vocab


def test_bad_settings_and_files(tmp_path):
    with pytest.raises(ConfigError, match="data.text.tokenizer: 'words'"):
        fit_tokenizer(TEXTS, kind="words")
    with pytest.raises(ConfigError, match="distinct"):
        fit_tokenizer(TEXTS, pad_token="[X]", unk_token="[X]")
    with pytest.raises(ConfigError, match="head_tokens: 8 must be < data.text.max_length"):
        fit_tokenizer(TEXTS, max_length=8, truncation="head_tail", head_tokens=8)
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a robust_paddle tokenizer file"):
        TextTokenizer.load(str(bad))
    bad.write_text("{oops")
    with pytest.raises(CheckpointError, match=r"tokenizer.json:1: not valid JSON"):
        TextTokenizer.load(str(bad))
