"""The text sample pipeline (text -> optional EDA -> token ids) and the tokenizer of a run.

``TextPipeline`` plays the role ``transforms.Pipeline`` plays for images inside ``ArrayDataset``: a dataset
of texts (an object array of strings, or of ``(text, pair)`` tuples) yields ``(ids int64 [L], label, index)``.
With ``augment="eda"`` the text is first replaced by its EDA version for ``(seed, epoch, index, view)``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np

from robust_paddle.data.eda import EDA
from robust_paddle.data.tokenize import TOKENIZER_FILE, TextTokenizer, fit_tokenizer
from robust_paddle.errors import ConfigError

logger = logging.getLogger(__name__)
TEXT_AUGMENTS = ("none", "eda")


@dataclasses.dataclass(frozen=True)
class TextPipeline:
    """Text -> ``[L]`` int64 token ids (see the module doc).

    Attributes:
        tokenizer: the run's fitted tokenizer (its long-text rule included). augment: ``none`` or ``eda``.
        eda: the EDA settings (needed when ``augment == "eda"``). seed: the run's seed.
    """

    tokenizer: TextTokenizer
    augment: str = "none"
    eda: EDA | None = None
    seed: int = 0
    kind: str = "text"

    def raw(self, sample: Any) -> Any:
        return sample

    def with_augment(self, augment: str) -> TextPipeline:
        if augment not in TEXT_AUGMENTS:
            raise ConfigError(f"data.augment: {augment!r} does not apply to texts; choose one of: "
                              f"{', '.join(TEXT_AUGMENTS)}")
        if augment == "eda" and self.eda is None:
            raise ConfigError("data.augment: eda needs the EDA settings (data.text.eda)")
        return dataclasses.replace(self, augment=augment)

    @property
    def augmented(self) -> bool:
        """Whether training texts are augmented (EDA), i.e. whether two views of a sample differ (the flag
        :class:`~robust_paddle.data.transforms.Pipeline` has: methods ask it before requesting extra views)."""
        return self.augment == "eda"

    @property
    def strong_augmented(self) -> bool:
        """Whether the strong view differs from the plain text: strong views are EDA views too."""
        return self.augmented

    def augment_text(self, sample: Any, *, index: int, epoch: int, view: int = 0) -> Any:
        """The (possibly EDA-augmented) text or pair of sample ``index`` in ``epoch``."""
        if self.augment != "eda":
            return sample
        aug = self.eda.augment  # type: ignore[union-attr]
        if isinstance(sample, tuple):
            return tuple(aug(t, seed=self.seed + k, epoch=epoch, index=index, view=view) for k, t in enumerate(sample))
        return aug(sample, seed=self.seed, epoch=epoch, index=index, view=view)

    def load(self, sample: Any, *, index: int, epoch: int = 0, view: int = 0, strong: bool = False) -> np.ndarray:
        """The ``ArrayDataset`` entry point: ``[L]`` int64 ids (``strong`` views are EDA views here too)."""
        return self(sample, index=index, epoch=epoch, view=view + (1 if strong else 0))

    def __call__(self, sample: Any, *, index: int = 0, epoch: int = 0, view: int = 0) -> np.ndarray:
        sample = self.augment_text(sample, index=index, epoch=epoch, view=view)
        return self.tokenizer.encode(*sample) if isinstance(sample, tuple) else self.tokenizer.encode(sample)


def build_eda(tc) -> EDA:
    """``EDA`` from ``data.text.eda`` (reads the synonym / stop-word files)."""
    e = tc.eda
    return EDA.from_files(synonyms=e.synonyms, stopwords=e.stopwords, builtin=e.builtin, alpha_sr=e.alpha_sr,
                          alpha_ri=e.alpha_ri, alpha_rs=e.alpha_rs, p_rd=e.p_rd, n_aug=e.n_aug)


def _check_saved(tok: TextTokenizer, tc, path: str) -> None:
    """A saved tokenizer must agree with the config's tokenizer settings (else the ids would differ); an
    ``ernie`` tokenizer's normalisation comes from its model directory, not from ``data.text``."""
    want = {"kind": tc.tokenizer, "max_length": tc.max_length, "truncation": tc.truncation}
    if tok.kind != "ernie":
        want.update(lowercase=tc.lowercase, nfkc=tc.nfkc)
    got = {k: getattr(tok, k) for k in want}
    diff = [f"{k}: file {got[k]!r}, config {want[k]!r}" for k in want if got[k] != want[k]]
    if diff:
        raise ConfigError(f"{path} does not match data.text ({'; '.join(diff)}); use the run's own config.yaml")


def ernie_vocab_path(tc, model) -> tuple[str, str]:
    """``(model directory, the setting it comes from)`` of an ``ernie`` tokenizer: ``data.text.vocab_path``, else
    ``model.params.path`` of ``model.name: ernie`` (``model``: the ``model`` config section)."""
    if tc.vocab_path:
        return tc.vocab_path, "data.text.vocab_path"
    if model is not None and model.name == "ernie" and isinstance(model.params.get("path"), str):
        return model.params["path"], "model.params.path"
    raise ConfigError("data.text.tokenizer: ernie needs data.text.vocab_path (a local PaddleNLP model directory "
                      "with vocab.txt), or model.name: ernie with model.params.path")


def run_tokenizer(tc, texts: np.ndarray, *, run_dir: str | None, model=None) -> TextTokenizer:
    """The run's tokenizer: ``<run_dir>/tokenizer.json`` when it exists (eval / report / export / resume), else
    fitted on ``texts`` (the training split) from ``data.text`` (``ernie``: read from its model directory,
    see :func:`ernie_vocab_path`; ``model``: the config's ``model`` section)."""
    path = os.path.join(run_dir, TOKENIZER_FILE) if run_dir else ""
    if path and os.path.isfile(path):
        tok = TextTokenizer.load(path)
        _check_saved(tok, tc, path)
        logger.info("tokenizer %s: %s, %d tokens (from %s)", tok.kind, tok.truncation, tok.vocab_size, path)
        return tok
    vocab_path, vocab_field = ernie_vocab_path(tc, model) if tc.tokenizer == "ernie" else ("", "")
    tok = fit_tokenizer(list(texts), kind=tc.tokenizer, vocab_size=tc.vocab_size, min_freq=tc.min_freq,
                        lowercase=tc.lowercase, nfkc=tc.nfkc, max_length=tc.max_length, truncation=tc.truncation,
                        head_tokens=tc.head_tokens, pad_token=tc.pad_token, unk_token=tc.unk_token,
                        sep_token=tc.sep_token, extra_special_tokens=tc.extra_special_tokens,
                        vocab_path=vocab_path, vocab_field=vocab_field)
    logger.info("tokenizer %s fitted on %d training texts: %d tokens", tok.kind, len(texts), tok.vocab_size)
    return tok


def text_model_kwargs(tok: TextTokenizer, tc) -> dict[str, Any]:
    """What a text model needs from the data: vocabulary size, pad id, tokens, and the sliding-window rule."""
    if tc.window_length and tc.window_length > tc.max_length:
        raise ConfigError(f"data.text.window_length: {tc.window_length} is longer than data.text.max_length "
                          f"({tc.max_length})")
    return {"vocab_size": tok.vocab_size, "pad_id": tok.pad_id, "vocab": list(tok.vocab),
            "window_length": tc.window_length, "window_stride": tc.window_stride,
            "window_aggregate": tc.window_aggregate}
