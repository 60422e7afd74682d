"""VisualDL logging hook. VisualDL is imported only when the hook is used.

Layout: every run writes one log file under ``<run>/vdl/``. ``visualdl --logdir output/`` walks the
folder tree and shows each ``<run>/vdl`` folder as one run (named by its path), so runs sit side by side
and the hparams view compares them. VisualDL reads only the newest ``vdlrecords.*.log`` of a folder, so
a resumed run appends to its existing file instead of starting a new one.
"""

from __future__ import annotations

import glob
import json
import logging
import numbers
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from robust_paddle.engine.hooks import Hook
from robust_paddle.errors import ConfigError, MissingDependencyError
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)


def latest_log_file(logdir: str) -> str | None:
    """Name of the log file VisualDL reads in ``logdir`` (it picks the greatest ``vdlrecords*`` name)."""
    names = [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(logdir), "vdlrecords.*"))]
    return max(names) if names else None


def _log_writer(logdir: str, *, file_name: str = "") -> Any:
    try:
        from visualdl import LogWriter
    except ImportError as e:  # pragma: no cover - visualdl is a core dependency
        raise MissingDependencyError("VisualDL logging needs visualdl: pip install visualdl==2.5.3 "
                          "(or set train.visualdl=false)") from e
    return LogWriter(logdir=logdir, file_name=file_name)


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def _tag(text: str) -> str:
    return str(text).replace("%", "pct")  # VisualDL rejects '%' in tags


@HOOKS.register("visualdl")
class VisualDLHook(Hook):
    """Writes scalars (every loss term, learning rate, metrics) and histograms to ``<run>/vdl``.

    Step scalars go under ``train_step/<term>`` (every loss term and ``lr``) every ``train.log_every``
    optimizer steps. At each epoch end: every finite number in ``trainer.epoch_scalars`` (``train/<term>``
    epoch means, ``train/lr``, ``val/*``, ``test/*``, ``best/*`` and what methods and hooks add, such as
    ``select/precision``, ``select/recall``, ``noise/rate_gmm``); on evaluation epochs ``train/acc``
    (agreement with the given, possibly noisy, training labels) and ``train/acc_clean`` (against the
    clean labels when they are known) over a fixed random subset of at most ``train_acc_samples``
    training samples (over the whole set, at no cost, when this epoch's cached pass over the training set
    already exists, e.g. DivideMix's division); per-class recall; ``trainer.epoch_histograms`` (``samples/loss``,
    ``samples/clean_prob``) as histograms. After training: the confusion matrices as images and the run's
    hyper-parameters with its final metrics (VisualDL's hparams view).

    Args:
        train_acc_samples: size of the training subset scored for ``train/acc`` (0, or ``train.diagnostics: false``, turns it off). It costs
            one forward pass over that many samples per evaluation.
    """

    priority = 80
    name = "visualdl"

    def __init__(self, *, train_acc_samples: int = 2048) -> None:
        if isinstance(train_acc_samples, bool) or not isinstance(train_acc_samples, int) or train_acc_samples < 0:
            raise ConfigError(f"visualdl.train_acc_samples must be an int >= 0, got {train_acc_samples!r}")
        self.train_acc_samples = train_acc_samples
        self.writer: Any = None
        self._train_loader: Any = None
        self._last_step: int | None = None  # epoch logged last in this session, and the tags logged at it
        self._last_tags: set[str] = set()

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        logdir = os.path.join(trainer.output_dir, "vdl")
        self.writer = _log_writer(logdir, file_name=latest_log_file(logdir) or "")
        self._train_loader = self._train_subset_loader(trainer)
        if trainer.start_epoch == 0:
            self._log_annotators(trainer)

    def _log_annotators(self, trainer: Trainer) -> None:
        """With ``data.annotations``: each annotator's estimated accuracy (``annotators/accuracy``, one step per
        annotator, best first, as in ``annotators.csv``) and the table as text."""
        path = os.path.join(trainer.output_dir, "annotators.json")
        if not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as fh:
            rows = json.load(fh)["annotators"]
        lines = ["| rank | annotator | answers | accuracy |", "|---|---|---|---|"]
        for rank, row in enumerate(rows):
            self.writer.add_scalar(tag="annotators/accuracy", step=rank, value=float(row["accuracy"]))
            lines.append(f"| {rank} | {row['annotator']} | {row['answers']} | {row['accuracy']:.4f} |")
        self.writer.add_text(tag="annotators/table", text_string="\n".join(lines), step=0)

    def _train_subset_loader(self, trainer: Trainer) -> Any:
        loader = trainer.loaders.get("train_eval")
        if loader is None or self.train_acc_samples == 0 or not getattr(trainer.cfg.train, "diagnostics", True):
            return None  # train.diagnostics: false turns every extra pass over the training set off
        n = len(loader.dataset)
        if n <= self.train_acc_samples:
            return loader
        import paddle

        from robust_paddle.data import build_loader

        # a fixed subset (seeded by the run's seed) so the curve compares the same samples every epoch
        keep = np.sort(np.random.default_rng(trainer.cfg.seed).choice(n, self.train_acc_samples, replace=False))
        d = trainer.cfg.data
        return build_loader(paddle.io.Subset(loader.dataset, keep.tolist()), batch_size=d.eval_batch_size,
                            shuffle=False, seed=trainer.cfg.seed, num_workers=d.num_workers)

    def train_accuracy(self, trainer: Trainer) -> dict[str, float]:
        """``train/acc`` (vs the training labels) and ``train/acc_clean`` (vs clean labels, when known)."""
        if self._train_loader is None:
            return {}
        ds = trainer.loaders["train_eval"].dataset
        cached = trainer.cached_train_set_outputs() if hasattr(trainer, "cached_train_set_outputs") else None
        if cached is not None:  # this epoch's pass over the whole set (e.g. DivideMix's division): reuse it
            logits, idx = cached.logits, np.arange(cached.logits.shape[0])
        else:
            logits, idx = trainer.predict_logits(self._train_loader)
        preds = logits.argmax(1)
        labels = np.asarray(ds.labels)
        out = {"train/acc": float(np.mean(preds == labels[idx]))}
        clean = getattr(ds, "clean_labels", None)
        if clean is not None and not np.array_equal(np.asarray(clean), labels):
            out["train/acc_clean"] = float(np.mean(preds == np.asarray(clean)[idx]))
        return out

    def after_step(self, trainer: Trainer, terms: dict[str, float]) -> None:
        if self.writer is None or trainer.global_step % trainer.cfg.train.log_every:
            return
        for k, v in terms.items():
            if _finite(v):
                self.writer.add_scalar(tag=_tag(f"train_step/{k}"), value=float(v), step=trainer.global_step)
        self.writer.add_scalar(tag="train_step/lr", value=trainer.current_lr(), step=trainer.global_step)

    def after_epoch(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        step = trainer.epoch + 1
        self._last_step, self._last_tags = step, set()
        for k, v in trainer.epoch_scalars.items():
            if k != "epoch" and _finite(v):
                self.writer.add_scalar(tag=_tag(k), value=float(v), step=step)
                self._last_tags.add(k)
        if trainer.is_eval_epoch() and "train/acc" not in trainer.epoch_scalars:  # SampleStatsHook may have measured it already
            for k, v in self.train_accuracy(trainer).items():
                self.writer.add_scalar(tag=k, value=v, step=step)
        if any(k.startswith(("val/", "test/")) for k in trainer.epoch_scalars):  # evaluated this epoch
            names = list(trainer.meta.get("class_names") or [])
            for split in ("val", "test"):
                recall = trainer.eval_details.get(split, {}).get("per_class_recall", [])
                for c, r in enumerate(recall):
                    label = names[c] if c < len(names) else str(c)
                    self.writer.add_scalar(tag=_tag(f"{split}/recall/{label}"), value=float(r), step=step)
        for k, values in trainer.epoch_histograms.items():
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            values = values[np.isfinite(values)]
            if values.size:
                self.writer.add_histogram(tag=_tag(k), values=values, step=step, buckets=30)
        self.writer.flush()

    def after_train(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        hparams = run_hparams(trainer.cfg)
        for split in ("val", "test"):  # confusion matrices of the last evaluation as images
            res = trainer.eval_details.get(split)
            if res and "confusion" in res:
                from robust_paddle.quality.calibration import confusion_image

                img = confusion_image(res["confusion"], class_names=trainer.meta.get("class_names"),
                                      title=f"Confusion matrix ({split})")
                self.writer.add_image(tag=f"{split}/confusion", img=img, step=trainer.epoch + 1)
        # Hooks running after this one at the epoch end, or before it in after_train (calibration's
        # <split>/ece), add to the last row: log what is new, since the hparams view reads each metric from
        # the scalar of the same tag.
        last = trainer.history[-1] if trainer.history else {}
        if last.get("epoch") == self._last_step:
            for k, v in last.items():
                if k != "epoch" and k not in self._last_tags and _finite(v):
                    self.writer.add_scalar(tag=_tag(k), value=float(v), step=self._last_step)
        final = [k for k, v in trainer.last_eval_scalars().items() if _finite(v)]
        best = "best/" + trainer.cfg.train.monitor
        if trainer.history and _finite(trainer.history[-1].get(best)):
            final.append(best)
        if final:
            self.writer.add_hparams(hparams_dict=hparams, metrics_list=sorted(_tag(k) for k in final))
        self.close()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self._train_loader = None


def run_hparams(cfg: Any) -> dict[str, str | int | float]:
    """The hyper-parameters shown in VisualDL's hparams view (strings, ints and floats only)."""
    noise = cfg.data.noise
    return {"method": cfg.method.name, "loss": cfg.loss.name, "model": cfg.model.name,
            "dataset": cfg.data.name, "noise": f"{noise.kind}-{noise.rate:g}" if noise.kind != "none" else "none",
            "noise_rate": float(noise.rate), "optimizer": cfg.optimizer.name, "lr": float(cfg.optimizer.lr),
            "scheduler": cfg.scheduler.name, "batch_size": int(cfg.data.batch_size),
            "epochs": int(cfg.train.epochs), "amp": str(cfg.train.amp), "seed": int(cfg.seed)}
