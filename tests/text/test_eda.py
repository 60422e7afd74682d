"""EDA (Wei and Zou 2019): each operation's effect, per-(seed, epoch, index) determinism, word files."""

from collections import Counter

import numpy as np
import pytest

from robust_paddle.data.eda import EDA, read_synonyms
from robust_paddle.errors import DataError

WORDS = ["这个", "酒店", "很", "干净", "服务", "不错"]


def test_operations():
    eda = EDA.from_files()
    rng = np.random.default_rng(0)
    swapped = eda.random_swap(WORDS, 2, rng)
    assert Counter(swapped) == Counter(WORDS) and swapped != WORDS
    deleted = eda.random_deletion(WORDS, 0.5, np.random.default_rng(1))
    assert 1 <= len(deleted) < len(WORDS) and all(w in WORDS for w in deleted)
    assert eda.random_deletion(WORDS, 1.0, rng) != []  # at least one word is kept
    replaced = eda.synonym_replacement(WORDS, 1, np.random.default_rng(2))
    changed = [(a, b) for a, b in zip(WORDS, replaced) if a != b]
    assert len(changed) == 1 and changed[0][1] in eda.synonyms[changed[0][0]]
    inserted = eda.random_insertion(WORDS, 2, np.random.default_rng(3))
    assert len(inserted) == len(WORDS) + 2
    extra = Counter(inserted) - Counter(WORDS)
    assert all(any(w in eda.synonyms.get(s, []) for s in WORDS) for w in extra)


def test_stopwords_are_never_replaced():
    eda = EDA(synonyms={"很": ["非常"], "好": ["棒"]}, stopwords=frozenset({"很"}), alpha_sr=1.0)
    out = eda.synonym_replacement(["很", "好"], 2, np.random.default_rng(0))
    assert out == ["很", "棒"]


def test_augment_is_a_function_of_seed_epoch_index():
    eda = EDA.from_files(n_aug=4)
    text = "这个酒店很干净服务不错价格便宜"
    a = [eda.augment(text, seed=3, epoch=e, index=7) for e in range(8)]
    b = [eda.augment(text, seed=3, epoch=e, index=7) for e in range(8)]
    assert a == b
    assert len(set(a)) > 1 and text in a  # version 0 is the original text
    versions = {eda.version(text, k, seed=3, index=7) for k in range(1, 5)}
    assert set(a) <= versions | {text}


def test_synonym_file_and_errors(tmp_path):
    f = tmp_path / "syn.txt"
    f.write_bytes("\ufeff好 棒\r\n\r\n差 烂 糟\n".encode())
    assert read_synonyms(str(f)) == [["好", "棒"], ["差", "烂", "糟"]]
    eda = EDA.from_files(synonyms=str(f), builtin=False)
    assert eda.synonyms["烂"] == ["差", "糟"]
    f.write_text("好 棒\n孤单\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"syn.txt:2: a synonym line needs at least two words"):
        read_synonyms(str(f))
    with pytest.raises(ValueError, match="n_aug must be an int >= 1"):
        EDA(n_aug=0)
    with pytest.raises(ValueError, match="every operation is off"):
        EDA(alpha_sr=0, alpha_ri=0, alpha_rs=0, p_rd=0)
