"""EDA text augmentation (Wei and Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on
Text Classification Tasks", https://arxiv.org/abs/1901.11196).

Four operations on the words of a text, each changing ``n = max(1, int(alpha * words))`` words:

* synonym replacement (SR): ``n`` distinct non-stop words that have synonyms are replaced by a random synonym;
* random insertion (RI): a random synonym of a random non-stop word is inserted at a random place, ``n`` times;
* random swap (RS): two random words swap places, ``n`` times;
* random deletion (RD): every word is deleted with probability ``p_rd`` (at least one word is kept).

As in the paper each sample has ``n_aug`` augmented versions, version ``k`` (1..n_aug) made by operation
``(k - 1) mod 4`` (SR, RI, RS, RD) with the random draws of ``(seed, index, k)``; in epoch ``e`` sample ``i``
is shown version ``v`` drawn from ``(seed, e, i)`` in ``0..n_aug`` (0: the original text). So a sample's
augmentation is a pure function of ``(seed, epoch, index)``: reproducible whatever the loader order, and a
resumed run sees the same texts.

Words: whitespace-separated words for texts with spaces, else ``jieba`` words (Chinese); the result is joined
back with a space or with nothing. Synonyms come from a user file (one group per line, ``word syn1 syn2 ...``,
every word of a group is a synonym of the others) and/or the small built-in Chinese list below (meant for
the demo on product reviews, not as a thesaurus); stop words (never replaced or used for insertion) from a
file of one word per line plus a built-in list of Chinese function words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from robust_paddle.errors import ConfigError, DataError

OPERATIONS = ("sr", "ri", "rs", "rd")
BUILTIN_SYNONYMS = (
    "好 不错 棒 好用", "差 糟糕 烂 差劲", "喜欢 喜爱 爱", "失望 沮丧 遗憾", "快 迅速 很快", "慢 缓慢",
    "便宜 实惠 划算", "贵 昂贵", "满意 满足", "推荐 建议", "干净 整洁", "脏 不干净", "舒服 舒适",
    "漂亮 好看 美观", "难看 丑", "方便 便利", "质量 品质", "服务 服务态度", "酒店 宾馆 饭店", "书 图书 书籍",
    "房间 客房", "价格 价钱", "东西 物品 商品", "很 非常 挺 特别", "还行 一般 凑合", "问题 毛病",
    "买 购买", "快递 物流", "屏幕 显示屏", "电脑 笔记本",
)
BUILTIN_STOPWORDS = ("的", "了", "是", "在", "和", "也", "就", "都", "而", "及", "与", "着", "或", "一个", "没有",
                     "我", "你", "他", "她", "它", "我们", "这", "那", "吧", "啊", "呢", "吗", ",", "，", "。", "!",
                     "！", "?", "？", "、", ".", "~", " ")


def _groups_to_map(groups: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for group in groups:
        for w in group:
            syns = out.setdefault(w, [])
            syns += [s for s in group if s != w and s not in syns]
    return out


def read_synonyms(path: str) -> list[list[str]]:
    """Synonym groups from a UTF-8 file: one group per line, words separated by spaces (at least two).

    Raises:
        DataError: ``file:line`` for a line with fewer than two words; the reader's errors (missing file,
            non-UTF-8 bytes).
    """
    from robust_paddle.data.textfile import iter_text_lines

    groups = []
    for n, line in iter_text_lines(path, what="data.text.eda.synonyms"):
        words = line.split()
        if len(words) < 2:
            raise DataError(f"{path}:{n}: a synonym line needs at least two words separated by spaces, got {line!r}")
        groups.append(words)
    return groups


def read_stopwords(path: str) -> list[str]:
    """One stop word per line (UTF-8; blank lines skipped)."""
    from robust_paddle.data.textfile import iter_text_lines

    return [line.strip() for _, line in iter_text_lines(path, what="data.text.eda.stopwords")]


@dataclass
class EDA:
    """EDA with fixed settings; ``augment(text, seed=, epoch=, index=)`` is the per-sample entry point.

    Args:
        alpha_sr, alpha_ri, alpha_rs: fraction of words changed by SR / RI / RS (0 disables the operation).
        p_rd: deletion probability of RD (0 disables it).
        n_aug: augmented versions per sample (>= 1).
        synonyms: word -> synonyms. stopwords: words never replaced or inserted.
    """

    alpha_sr: float = 0.1
    alpha_ri: float = 0.1
    alpha_rs: float = 0.1
    p_rd: float = 0.1
    n_aug: int = 4
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    stopwords: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        rates = {"alpha_sr": self.alpha_sr, "alpha_ri": self.alpha_ri, "alpha_rs": self.alpha_rs, "p_rd": self.p_rd}
        for k, v in rates.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"data.text.eda.{k} must be a number in [0, 1], got {v!r}")
        if isinstance(self.n_aug, bool) or not isinstance(self.n_aug, int) or self.n_aug < 1:
            raise ConfigError(f"data.text.eda.n_aug must be an int >= 1, got {self.n_aug!r}")
        self._ops = [op for op, v in zip(OPERATIONS, (self.alpha_sr, self.alpha_ri, self.alpha_rs, self.p_rd)) if v > 0]
        if not self._ops:
            raise ConfigError("data.text.eda: every operation is off (alpha_sr, alpha_ri, alpha_rs and p_rd are 0)")

    @classmethod
    def from_files(cls, *, synonyms: str = "", stopwords: str = "", builtin: bool = True, **rates) -> EDA:
        """Settings plus the synonym / stop-word files (``""``: none) and, with ``builtin``, the built-in lists."""
        groups = [g.split() for g in BUILTIN_SYNONYMS] if builtin else []
        if synonyms:
            groups += read_synonyms(synonyms)
        stops = set(BUILTIN_STOPWORDS if builtin else ())
        if stopwords:
            stops.update(read_stopwords(stopwords))
        return cls(synonyms=_groups_to_map(groups), stopwords=frozenset(stops), **rates)

    # ------------------------------------------------------------------------------------------ words
    @staticmethod
    def split(text: str) -> tuple[list[str], str]:
        """``(words, joiner)``: whitespace words joined by a space, else jieba words joined by nothing."""
        if any(c.isspace() for c in text.strip()):
            return text.split(), " "
        from robust_paddle.data.tokenize import _jieba

        return _jieba().lcut(text, HMM=False), ""

    def _candidates(self, words: list[str]) -> list[int]:
        return [i for i, w in enumerate(words) if w not in self.stopwords and w in self.synonyms]

    def synonym_replacement(self, words: list[str], n: int, rng: np.random.Generator) -> list[str]:
        out, cand = list(words), self._candidates(words)
        for i in rng.permutation(len(cand))[:n] if cand else []:
            pos = cand[int(i)]
            syns = self.synonyms[words[pos]]
            out[pos] = syns[int(rng.integers(len(syns)))]
        return out

    def random_insertion(self, words: list[str], n: int, rng: np.random.Generator) -> list[str]:
        out, cand = list(words), self._candidates(words)
        if not cand:
            return out
        for _ in range(n):
            syns = self.synonyms[words[cand[int(rng.integers(len(cand)))]]]
            out.insert(int(rng.integers(len(out) + 1)), syns[int(rng.integers(len(syns)))])
        return out

    @staticmethod
    def random_swap(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
        out = list(words)
        if len(out) < 2:
            return out
        for _ in range(n):
            i, j = (int(v) for v in rng.choice(len(out), size=2, replace=False))
            out[i], out[j] = out[j], out[i]
        return out

    @staticmethod
    def random_deletion(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
        if len(words) <= 1:
            return list(words)
        keep = rng.random(len(words)) >= p
        if not keep.any():
            keep[int(rng.integers(len(words)))] = True
        return [w for w, k in zip(words, keep) if k]

    # ------------------------------------------------------------------------------------------ entry
    def version(self, text: str, k: int, *, seed: int, index: int) -> str:
        """Augmented version ``k`` (0 = the text itself) of sample ``index``."""
        if k == 0 or not text:
            return text
        words, joiner = self.split(text)
        if not words:
            return text
        op = self._ops[(k - 1) % len(self._ops)]
        rng = np.random.default_rng([seed % 2**63, index, k, 0xEDA])
        if op == "rd":
            words = self.random_deletion(words, self.p_rd, rng)
        else:
            alpha = {"sr": self.alpha_sr, "ri": self.alpha_ri, "rs": self.alpha_rs}[op]
            n = max(1, int(alpha * len(words)))
            fn = {"sr": self.synonym_replacement, "ri": self.random_insertion, "rs": self.random_swap}[op]
            words = fn(words, n, rng)
        return joiner.join(words)

    def augment(self, text: str, *, seed: int, epoch: int, index: int, view: int = 0) -> str:
        """The version of sample ``index`` shown in ``epoch`` (``view`` > 0: further independent draws)."""
        k = int(np.random.default_rng([seed % 2**63, epoch, index, view, 0xEDA]).integers(self.n_aug + 1))
        return self.version(text, k, seed=seed, index=index)
