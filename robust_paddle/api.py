"""The public Python API (re-exported lazily by ``robust_paddle/__init__.py``).

Train and evaluate from a config, audit labels from arrays without training (confident learning), load an
exported model for inference, and list the training methods with their parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_paddle.errors import ConfigError

__all__ = ["train", "evaluate", "find_label_issues", "estimate_noise_matrix", "load_predictor", "list_methods",
           "Predictor"]


def _config(config: Any, overrides: Sequence[str]) -> Any:
    from robust_paddle import config as config_mod

    if isinstance(config, config_mod.Config):
        return config_mod.from_dict(config_mod.apply_overrides(config_mod.to_dict(config), list(overrides)))
    if config is None or isinstance(config, str):
        return config_mod.load(config, list(overrides))
    raise ConfigError(f"config: expected a YAML path, a Config or None (the defaults), got {type(config).__name__}")


def train(config: Any = None, *, overrides: Sequence[str] = (), resume: str | None = None) -> dict[str, Any]:
    """Train a model as ``robust-paddle train`` does; returns the metrics summary (also in ``metrics.json``).

    Args:
        config: a YAML path, a :class:`~robust_paddle.config.Config`, or None for the defaults.
        overrides: ``"key.path=value"`` strings, e.g. ``["train.epochs=5", "method.name=dividemix"]``.
        resume: a run folder to continue from its latest checkpoint.

    Returns:
        ``{"epochs_run": int, "best": {...}, "final": {"test/acc": float, ...}, ...}``.

    Raises:
        ConfigError: a config value, or the output folder already holds a run.
        DataError: unreadable or inconsistent data.
        CheckpointError: ``resume`` points at an unusable checkpoint.
        TrainingError: the loss became non-finite (the last good checkpoint is kept).
    """
    from robust_paddle.pipeline.run import train as train_run

    return train_run(_config(config, overrides), resume=resume)


def evaluate(config: Any, checkpoint: str, *, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate ``checkpoint`` (a ``.pdckpt`` file or a run folder) on the val and test splits.

    Returns:
        ``{split: {"acc": float, "macro_f1": float, "confusion": [[...]], ...}}``.

    Raises:
        ConfigError, DataError, CheckpointError: as :func:`train`; ``OSError`` for a missing checkpoint.
    """
    from robust_paddle.pipeline.run import evaluate as evaluate_run

    return evaluate_run(_config(config, overrides), checkpoint)


def find_label_issues(labels: Any, pred_probs: Any, *, clean_prob: Any = "gmm", seed: int = 42) -> np.ndarray:
    """Indices of the samples whose given label looks wrong, most suspect first (no training needed).

    Confident learning (Northcutt et al. 2021, "Confident Learning: Estimating Uncertainty in Dataset
    Labels", arXiv:1911.00068: prune by noise rate) flags samples from out-of-sample probabilities; with a
    clean probability it also flags samples whose clean probability is below 0.5 and whose prediction
    disagrees with the label. The verdict and the order are those of the run's ``label_issues.csv``
    (flagged rows, lowest self-confidence ``p[given]`` first), so the same probabilities give the same list.

    Args:
        labels: [N] given labels, integers in [0, C).
        pred_probs: [N, C] predicted probabilities (rows sum to 1), ideally out-of-sample (k-fold) or from a
            noise-robust model.
        clean_prob: ``"gmm"`` (default, as the report for methods without their own: a two-component GMM on
            the per-sample cross-entropy ``-log p[given]``, Li et al. 2020, arXiv:2002.07394), ``None`` (plain
            confident learning, like cleanlab's ``find_label_issues``), or an [N] array of probabilities
            that each label is correct.
        seed: seed of the GMM fit (the report uses the run's ``seed``, 42 by default).

    Returns:
        [K] int64 indices into ``labels``, most suspect first.

    Raises:
        DataError: shapes, dtypes or values of ``labels``/``pred_probs``/``clean_prob`` are wrong.
        ConfigError: ``clean_prob`` is a string other than ``"gmm"``.
    """
    from robust_paddle.quality import estimation as E
    from robust_paddle.quality.report import loss_gmm, rank_label_issues

    labels, probs = E.check_inputs(labels, pred_probs)
    if isinstance(clean_prob, str):
        if clean_prob != "gmm":
            raise ConfigError(f"clean_prob: {clean_prob!r} is not allowed; pass 'gmm', None or an [N] array")
        picked = probs[np.arange(len(labels)), labels]
        losses = -np.log(np.maximum(picked, np.finfo(np.float64).tiny))
        clean_prob, _ = loss_gmm(losses, seed=seed)
    order, is_issue, _ = rank_label_issues(labels, probs, None if clean_prob is None else
                                           np.clip(np.asarray(clean_prob, dtype=np.float64), 0.0, 1.0))
    return order[: int(is_issue.sum())].astype(np.int64)


def estimate_noise_matrix(labels: Any, pred_probs: Any) -> np.ndarray:
    """Estimated noise transition matrix ``T[i, j] = P(given = j | true = i)`` from the confident joint
    (Northcutt et al. 2021, arXiv:1911.00068).

    Args:
        labels: [N] given labels in [0, C); pred_probs: [N, C] out-of-sample probabilities.

    Returns:
        [C, C] float64, rows sum to 1.

    Raises:
        DataError: shapes, dtypes or values are wrong.
    """
    from robust_paddle.quality import estimation as E

    return E.estimate_noise_matrix(*E.check_inputs(labels, pred_probs))


class Predictor:
    """An exported model (``robust-paddle export``) on Paddle Inference, CPU; see :func:`load_predictor`.

    Attributes:
        info: the export's ``inference.yml`` (input shape, class names, normalisation, model version).
    """

    def __init__(self, model_dir: str, *, threads: int = 1, optimized: bool = True) -> None:
        from robust_paddle.deploy.predictor import MODEL_PREFIX, PaddlePredictor, load_model_info

        self.info = load_model_info(model_dir)
        self._predictor = PaddlePredictor(f"{model_dir}/{MODEL_PREFIX}", threads=threads, optimized=optimized,
                                          input_dtype=self.info.input_dtype)
        self._tokenizer: Any = None

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    def predict(self, inputs: Any, *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities [N, C] float32 of model inputs ``[N, *input_shape]`` (already normalised; a text
        model's inputs are int64 token ids ``[N, L]``, see :meth:`predict_texts`)."""
        from robust_paddle.ops import softmax

        x = np.asarray(inputs, dtype=self.info.input_dtype)
        if x.ndim != len(self.info.input_shape) + 1 or tuple(x.shape[1:]) != tuple(self.info.input_shape):
            from robust_paddle.errors import DataError

            raise DataError(f"inputs: expected shape [N, {', '.join(map(str, self.info.input_shape))}], "
                            f"got {list(x.shape)}")
        out = self._predictor.predict(x, batch_size=batch_size)
        return out.astype(np.float32) if self.info.softmax else softmax(out).astype(np.float32)

    def predict_texts(self, texts: Sequence[Any], *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities [N, C] of raw texts (strings, or ``(text, pair)`` for sentence pairs), tokenised
        with the export's ``tokenizer.json`` under the training run's long-text rule -- the checks and tokenisation
        of ``serve``'s ``{"texts": [...]}`` (:func:`robust_paddle.deploy.serve.parse_texts`).

        Raises:
            DataError: the model does not read texts, an empty list, a text that is not a string (or pair), is
                empty, or is longer than the run's ``data.text.max_chars``.
        """
        from robust_paddle.deploy.serve import parse_texts

        if self._tokenizer is None and self.info.kind == "text":
            self._tokenizer = self.info.tokenizer()
        samples = [list(t) if isinstance(t, tuple) else t for t in texts]
        ids = parse_texts(samples, self.info, self._tokenizer, max_batch_size=max(1, len(samples)))
        return self.predict(ids, batch_size=batch_size)

    def predict_images(self, images: Sequence[bytes], *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities [N, C] of encoded images (PNG/JPEG bytes), preprocessed like training."""
        from robust_paddle.deploy.predictor import preprocess_images

        return self.predict(preprocess_images(list(images), self.info), batch_size=batch_size)


def load_predictor(model_dir: str, *, threads: int = 1, optimized: bool = True) -> Predictor:
    """Load an exported model folder for inference.

    Args:
        model_dir: the ``--out`` folder of ``robust-paddle export`` (``inference.yml`` + the program).
        threads: CPU math-library threads.
        optimized: Paddle's IR fusion passes and oneDNN (the deployment setting).

    Raises:
        OSError: the folder or a model file is missing (names it).
        DataError: ``inference.yml`` is not an export's metadata.
    """
    return Predictor(model_dir, threads=threads, optimized=optimized)


def list_methods() -> list[dict[str, Any]]:
    """Every registered training method: ``[{"name", "summary", "params": [{"name", "type", "default",
    "doc", ...}]}]`` (what ``robust-paddle list methods`` prints)."""
    from robust_paddle.catalog import describe

    return describe("methods")
