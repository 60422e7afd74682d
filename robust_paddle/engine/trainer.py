"""The training loop: AMP, gradient accumulation and clipping; everything else is a hook.

Exact resume: every epoch starts by reseeding python/numpy/paddle from ``(seed, epoch)`` and the train
loader's order is a function of ``(seed, epoch)``, so a run resumed from the checkpoint written after
epoch k replays epochs k+1.. exactly as the uninterrupted run did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import paddle
from tqdm import tqdm

from robust_paddle.config import Config, to_dict
from robust_paddle.engine import distributed as dist
from robust_paddle.engine.checkpoint import check_state_keys, save_checkpoint
from robust_paddle.engine.contract import Hook, TrainableMethod
from robust_paddle.engine.file_writer import FileWriter
from robust_paddle.engine.finite import (
    CHECKED_INPUT_BATCHES,
    NonFiniteLossError,
    check_input_batch,
    check_logits,
    check_weights,
)
from robust_paddle.engine.logging_api import TrainerLog
from robust_paddle.engine.metrics import classification_metrics
from robust_paddle.engine.train_pass import TrainSetPass
from robust_paddle.errors import CheckpointError
from robust_paddle.ops import derive_seed

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    paddle.seed(seed)


def remap_optimizer_state(state: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Rename the parameter-name prefixes of an optimizer ``state_dict`` (accumulators, master weights)."""
    names = sorted(mapping, key=len, reverse=True)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key == "master_weights" and isinstance(value, dict):
            out[key] = {mapping.get(k, k): v for k, v in value.items()}
            continue
        for old in names:
            if key.startswith(old + "_"):
                key = mapping[old] + key[len(old):]
                break
        out[key] = value
    return out


class Trainer(TrainerLog, TrainSetPass):
    """Runs ``method`` for ``cfg.train.epochs`` epochs over ``loaders``.

    Args:
        cfg: resolved config.
        method: the training strategy (owns networks and per-sample state).
        loaders: ``{"train", "train_eval", "val"?, "test"?}`` DataLoaders; ``train``'s batch sampler has
            ``set_epoch``.
        optimizer: built over ``method.parameters()``; ``scheduler``: its LRScheduler or None.
        hooks: sorted by priority.
        output_dir: run folder (checkpoints/, metrics.json, vdl/ ...).
        meta: model metadata stored in checkpoints (num_classes, input_shape, class_names, mean, std).
        distributed: data parallel (``robust_paddle.engine.distributed``): wrap every network in ``DataParallel``,
            average the epoch's train terms over ranks, shard per-sample passes; ``loaders["train"]`` must
            already be sharded (``engine.run.make_loaders``).
    """

    def __init__(self, cfg: Config, method: TrainableMethod, loaders: dict[str, Any], *, optimizer: paddle.optimizer.Optimizer,
                 scheduler: paddle.optimizer.lr.LRScheduler | None, hooks: list[Hook], output_dir: str,
                 meta: dict[str, Any], data: Any = None, distributed: bool = False) -> None:
        self.cfg, self.method, self.loaders = cfg, method, loaders
        self.optimizer, self.scheduler = optimizer, scheduler
        self.hooks = sorted(hooks, key=lambda h: h.priority)
        self.output_dir, self.meta, self.data = output_dir, meta, data
        self.checkpoint_dir = os.path.join(output_dir, "checkpoints")
        self.is_main = paddle.distributed.get_rank() == 0
        self.epoch = 0
        self.start_epoch = 0
        self.global_step = 0
        self.stop_training = False
        self.stopped_early_at: int | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch_scalars: dict[str, float] = {}
        self.epoch_histograms: dict[str, np.ndarray] = {}
        self.eval_details: dict[str, dict[str, Any]] = {}
        self._setup_amp()
        self.distributed = bool(distributed) and dist.world_size() > 1
        self._shards: dict[int, Any] = {}
        self._input_checks_left = CHECKED_INPUT_BATCHES
        self._fitting = False
        self._files, self._files_async = FileWriter(), False  # per-epoch files written during the next epoch
        if self.distributed:  # after AMP O2 decoration, as Paddle requires; methods call the wrappers
            toggles = any(h.toggles_trainable for h in self.hooks)
            self.method.networks.update(dist.wrap_networks(self.method.networks, find_unused_parameters=toggles))

    # ----------------------------------------------------------------------------------------- AMP
    def _setup_amp(self) -> None:
        tc = self.cfg.train
        on_gpu = "gpu" in paddle.get_device()
        self.amp_enabled = tc.amp != "none" and on_gpu
        if tc.amp != "none" and not on_gpu:
            logger.warning("train.amp=%s asked for but the device is %s: AMP only works on GPU in Paddle; "
                           "training in float32", tc.amp, paddle.get_device())
        self.scaler = paddle.amp.GradScaler(enable=self.amp_enabled and tc.amp_dtype == "float16",
                                            init_loss_scaling=2.0**15)
        if self.amp_enabled and tc.amp == "O2":
            names = list(self.method.networks)
            models = paddle.amp.decorate(models=[self.method.networks[n] for n in names], optimizers=self.optimizer,
                                         level="O2", dtype=tc.amp_dtype)[0]
            models = models if isinstance(models, list) else [models]
            self.method.networks.update(dict(zip(names, models)))

    def autocast(self) -> contextlib.AbstractContextManager:
        tc = self.cfg.train
        if not self.amp_enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(enable=True, level=tc.amp, dtype=tc.amp_dtype)

    # ---------------------------------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        """Train to ``cfg.train.epochs`` (or early stop); returns :meth:`metrics_summary`."""
        for _ in self.fit_epochs():
            pass
        return self.metrics_summary()

    def fit_epochs(self) -> Iterator[int]:
        """:meth:`fit` one epoch at a time: a generator that yields each finished epoch (0-based), after its
        ``after_epoch`` hooks; exhausting it is :meth:`fit`. Benchmarks drive several runs this way, epoch by
        epoch in one process, to time them side by side. Closing it early stops training without the
        ``after_train`` hooks: the files of the epochs done are completed on disk and the hooks' ``on_exception``
        gets the ``GeneratorExit``, so they release what they hold (VisualDL's writer) as after an error."""
        epochs = self.cfg.train.epochs
        self._fitting = True
        try:
            self._call("before_train")
            self._files_async = True
            for epoch in range(self.start_epoch, epochs):
                self.epoch = epoch
                self.epoch_scalars, self.epoch_histograms = {"epoch": epoch + 1}, {}
                self.history.append(self.epoch_scalars)  # hooks fill it in place
                seed_everything(derive_seed(self.cfg.seed, epoch))
                sampler = self.loaders["train"].batch_sampler
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                self.method.before_epoch(self)
                self._call("before_epoch")
                self._train_epoch()
                if self.distributed:  # rank 0's BN statistics on every rank
                    dist.broadcast_buffers(self.method.networks)
                self.check_weights()  # before after_epoch: no division, evaluation or checkpoint of bad weights
                self.method.after_epoch(self)
                self._call("after_epoch")
                yield epoch
                if self.stop_training:
                    break
            self._files_async = False
            self._files.flush()  # every epoch's files are on disk for the after_train hooks
            self._call("after_train")
        except GeneratorExit as exc:  # closed early by the caller: not an error, but no after_train either
            self._files_async = False
            try:
                self._files.flush()  # unlike after an error, a failed write is the error shown
            finally:
                self._release_hooks(exc)
            raise
        except BaseException as exc:
            self._files_async = False
            with contextlib.suppress(Exception):  # the last good epoch's files complete; exc is the error shown
                self._files.flush()
            self._release_hooks(exc)
            raise
        finally:
            self._fitting = self._files_async = False
            self._files.close()

    def _release_hooks(self, exc: BaseException) -> None:
        """Every hook's ``on_exception`` (training ends without ``after_train``), each one's own error ignored:
        ``exc`` is the one the caller sees."""
        for h in self.hooks:
            with contextlib.suppress(Exception):
                h.on_exception(self, exc)

    def _train_epoch(self) -> None:
        tc = self.cfg.train
        loader = self.loaders["train"]
        n_batches = len(loader)
        accum = tc.accumulate_steps
        sums: dict[str, float] = {}
        self.method.train()
        bar = tqdm(total=n_batches, desc=f"epoch {self.epoch + 1}/{tc.epochs}", leave=False,
                   disable=not (tc.progress and self.is_main), dynamic_ncols=True)
        for i, batch in enumerate(loader):
            if self._input_checks_left > 0:
                self._input_checks_left -= 1
                self._check_inputs(batch, i)
            last_of_group = (i + 1) % accum == 0 or i + 1 == n_batches
            # data parallel + accumulation: only the group's last backward all-reduces the summed gradients
            with dist.no_sync(self.method.networks, enabled=self.distributed and not last_of_group):
                with self.autocast():
                    loss, terms = self.method.train_step(batch, epoch=self.epoch, step=self.global_step)
                value = float(loss)  # the one host sync of the step per term (loss first: checked below)
                floats = {k: value if v is loss else float(v) for k, v in terms.items()}
                bad = not math.isfinite(value)
                if self.distributed:  # all ranks stop together, not one of them inside a collective
                    bad = dist.any_true(bad)
                if bad:
                    what = f"non-finite on some rank (rank {dist.rank()}: {value})" if self.distributed else value
                    raise NonFiniteLossError(
                        f"loss became {what} at epoch {self.epoch + 1}, batch {i + 1}; training stopped and "
                        f"{self._kept()}. Lower optimizer.lr, enable train.grad_clip, or check the data for NaN/Inf "
                        "values")
                # average over the batches of the accumulation group (the epoch's last group may be shorter)
                group = min(accum, n_batches - (i // accum) * accum)
                if self.distributed:  # also when the method bypassed DataParallel.forward (forward_features)
                    dist.prepare_backward(self.method.networks, loss)
                self.scaler.scale(loss / group if group > 1 else loss).backward()
            if (i + 1) % accum == 0 or i + 1 == n_batches:
                if tc.grad_clip > 0:
                    # Clip here, over ALL parameters: Paddle's optimizer-level ClipGradByGlobalNorm is
                    # applied per parameter group, so with the no-decay group it would not be global.
                    self.scaler.unscale_(self.optimizer)
                    paddle.nn.utils.clip_grad_norm_(self.method.parameters(), tc.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.clear_grad()
                self.global_step += 1
                if self.scheduler is not None and self.cfg.scheduler.by == "step":
                    self.scheduler.step()
                self._call("after_step", dict(floats))
            for k, v in floats.items():
                sums[k] = sums.get(k, 0.0) + v
            if not bar.disable:
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                bar.update(1)
        bar.close()
        if self.scheduler is not None and self.cfg.scheduler.by == "epoch":
            self.scheduler.step()
        means = {k: v / max(n_batches, 1) for k, v in sums.items()}
        if self.distributed:  # each rank saw its shard of every batch: average the ranks' epoch means
            means = dist.mean_scalars(means)
        self.epoch_scalars.update({f"train/{k}": v for k, v in means.items()})
        self.epoch_scalars["train/lr"] = self.current_lr()

    # ------------------------------------------------------------------------------- non-finite guard
    def _kept(self) -> str:
        self._files.flush()  # the previous epoch's checkpoint may still be being written
        latest = os.path.join(self.checkpoint_dir, "latest.pdckpt")
        return f"the last good checkpoint {latest} is kept" if os.path.exists(latest) else "no checkpoint was written"

    def _check_inputs(self, batch: Any, i: int) -> None:
        check_input_batch(batch, i, epoch=self.epoch, distributed=self.distributed, kept=self._kept())

    def check_weights(self) -> None:
        """Every parameter and buffer of every network is finite (``engine.finite.check_weights``); runs after
        each training epoch, before the method's ``after_epoch`` and the hooks."""
        check_weights(self.method.networks, epoch=self.epoch, kept=self._kept())

    def _call(self, event: str, *args: Any) -> None:
        for h in self.hooks:
            getattr(h, event)(self, *args)

    # ------------------------------------------------------------------------------------ evaluation
    @paddle.no_grad()
    def predict_logits(self, loader: Any, *, shard: bool = False,
                       networks: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Logits [N, C] (float32) and dataset indices [N] over ``loader`` in eval mode.

        ``shard=True`` (data parallel; every rank must call it together): each rank predicts its shard of
        ``loader`` (:meth:`shard_loader`) and the rows are all-gathered in loader order, so every rank gets
        the full arrays. The default predicts the whole loader in this process (safe from rank 0 alone).
        ``networks=True``: [N, (1 + K) * C], the evaluation logits then each of the method's K networks'
        own logits (``method.predict_all``: the same forwards, no extra cost).
        """
        gather = shard and self.distributed
        local = self.shard_loader(loader) if gather else loader
        self.method.eval()
        outs, idxs = [], []
        for batch in local:
            with self.autocast():
                if networks:
                    ens, each = self.method.predict_all(batch[0])
                    logits = paddle.concat([t.astype("float32") for t in [ens, *each]], axis=1)
                else:
                    logits = self.method.predict(batch[0])
            outs.append(logits.astype("float32").numpy())
            idxs.append(batch[2].numpy())
        self.method.train()
        if not gather:
            logits = np.concatenate(outs)
            self._check_logits(logits, np.concatenate(idxs))
            return logits, np.concatenate(idxs)
        # positions of this rank's rows in the loader's order (the shard sampler yields them)
        where = np.array([p for b in local.batch_sampler for p in b], dtype=np.int64)
        logits = np.concatenate(outs) if outs else np.zeros((0, self.method.num_classes), np.float32)
        idx = np.concatenate(idxs) if idxs else np.zeros(0, np.int64)
        n = len(loader.dataset)
        logits, idx = dist.gather_rows(logits, where, total=n), dist.gather_rows(idx, where, total=n)
        self._check_logits(logits, idx)  # every rank holds the same rows, so all raise together
        return logits, idx

    def _check_logits(self, logits: np.ndarray, idx: np.ndarray) -> None:
        during = f" after epoch {self.epoch + 1}; training stopped and {self._kept()}" if self._fitting else ""
        check_logits(logits, idx, during=during)

    def shard_loader(self, loader: Any) -> Any:
        """This rank's shard of an evaluation ``loader`` (the loader itself in one process); cached."""
        if not self.distributed:
            return loader
        if id(loader) not in self._shards:
            self._shards[id(loader)] = (loader, dist.shard_loader(loader))
        return self._shards[id(loader)][1]

    def evaluate(self, split: str) -> dict[str, Any]:
        """Metrics of ``split`` against its labels (and ``*_clean`` ones when clean labels differ).

        Data parallel: collective (every rank evaluates its shard; all get the same metrics).
        """
        loader = self.loaders[split]
        ds = loader.dataset
        logits, idx = self.predict_logits(loader, shard=True)
        preds = logits.argmax(1)
        out = classification_metrics(ds.labels[idx], preds, num_classes=self.method.num_classes)
        clean = getattr(ds, "clean_labels", None)
        if clean is not None and not np.array_equal(clean, ds.labels):
            out["clean"] = classification_metrics(clean[idx], preds, num_classes=self.method.num_classes)
        return out

    def evaluate_all(self) -> dict[str, dict[str, Any]]:
        """Evaluate every held-out split; fills ``epoch_scalars`` (``val/acc``, ``test/macro_f1`` ...)."""
        self._call("before_eval")
        try:
            for split in ("val", "test"):
                if self.loaders.get(split) is None:
                    continue
                res = self.evaluate(split)
                self.eval_details[split] = res
                self.epoch_scalars[f"{split}/acc"] = res["acc"]
                self.epoch_scalars[f"{split}/macro_f1"] = res["macro_f1"]
                if "clean" in res:
                    self.epoch_scalars[f"{split}/acc_clean"] = res["clean"]["acc"]
        finally:
            self._call("after_eval")
        return self.eval_details

    def last_eval_scalars(self) -> dict[str, float]:
        for row in reversed(self.history):
            vals = {k: v for k, v in row.items() if k.startswith(("val/", "test/")) and v is not None}
            if vals:
                return vals
        return {}

    def is_eval_epoch(self) -> bool:
        """Whether the current epoch ends with an evaluation (every ``train.eval_every`` epochs and the last)."""
        n = self.epoch + 1
        return n % self.cfg.train.eval_every == 0 or n == self.cfg.train.epochs

    def current_lr(self) -> float:
        return float(self.optimizer.get_lr())

    # ----------------------------------------------------------------------------------- state
    def restart_schedule(self, reason: str) -> None:
        """Restart the learning-rate schedule at the current step (``ScheduledLR.restart``) for a freshly
        initialised network, so it trains the remaining epochs with the whole warm-up + decay plan instead of
        the tail of the old network's schedule; logged with ``reason`` and recorded as the epoch scalar
        ``lr/restart`` (1.0). A scheduler without ``restart`` keeps going (logged as a warning)."""
        restart = getattr(self.scheduler, "restart", None)
        if restart is None:
            logger.warning("%s; the learning-rate schedule (%s) cannot restart and continues", reason,
                           type(self.scheduler).__name__)
            return
        restart()
        logger.info("%s: learning-rate schedule restarted at epoch %d for the remaining %d epoch(s), lr %.4g",
                    reason, self.epoch + 1, self.cfg.train.epochs - self.epoch, self.current_lr())
        self.epoch_scalars["lr/restart"] = 1.0

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume after the current epoch."""
        return {
            "epoch": self.epoch + 1,
            "global_step": self.global_step,
            "networks": {k: dist.unwrap(v).state_dict() for k, v in self.method.networks.items()},
            "optimizer": remap_optimizer_state(self.optimizer.state_dict(), self._param_names(portable=False)),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "method": self.method.state_dict(),
            "hooks": {h.name: h.state_dict() for h in self.hooks},
            "history": self.history,
            "stopped_early_at": self.stopped_early_at,
            "stop_training": self.stop_training,
            "config": to_dict(self.cfg),
            "meta": self.meta,
            "world_size": dist.world_size() if self.distributed else 1,
        }

    def load_state_dict(self, state: dict[str, Any], *, source: str = "state") -> None:
        """Restore a checkpoint written by :meth:`state_dict` (training continues at ``state['epoch']``).

        Raises:
            CheckpointError: a network's parameters do not fit (missing, unexpected or mis-shaped keys).
        """
        missing = sorted(set(self.method.networks) - set(state["networks"]))
        if missing:
            raise CheckpointError(f"checkpoint lacks network(s) {missing}; it was written by another method "
                             f"({state['config']['method']['name']!r} vs {self.cfg.method.name!r})")
        self.weights_changed()
        for k, net in self.method.networks.items():
            net = dist.unwrap(net)
            check_state_keys(net.state_dict(), state["networks"][k], what=f"network {k!r}",
                             source=source)
            net.set_state_dict(state["networks"][k])
        self.optimizer.set_state_dict(remap_optimizer_state(state["optimizer"], self._param_names(portable=True)))
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.set_state_dict(state["scheduler"])
        self.method.set_state_dict(state.get("method") or {})
        hook_states = state.get("hooks", {})
        for h in self.hooks:
            if h.name in hook_states:
                h.set_state_dict(hook_states[h.name])
        self.history = list(state.get("history", []))
        saved_ws, ws = int(state.get("world_size", 1)), dist.world_size() if self.distributed else 1
        if saved_ws != ws:
            logger.info("the checkpoint was written by %d process(es), this run has %d: the global batches are the "
                        "same, but per-rank random draws and batch statistics differ, so a resumed run is not an exact "
                        "replay", saved_ws, ws)
        self.start_epoch = self.epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", 0))
        self.stopped_early_at = state.get("stopped_early_at")
        if state.get("stop_training"):
            self.start_epoch = self.cfg.train.epochs  # the run had already stopped early

    def _param_names(self, *, portable: bool) -> dict[str, str]:
        """Paddle keys optimizer state by global parameter names (``conv2d_6.w_0_velocity_0``), which
        depend on how many layers the process built before; checkpoints use positions instead."""
        pairs = [(p.name, f"@param{i}") for i, p in enumerate(self.method.parameters())]
        return {b: a for a, b in pairs} if portable else dict(pairs)

    def save(self, state: dict[str, Any], path: str) -> str:
        return save_checkpoint(state, path)

    def write_file(self, write: Any, *args: Any) -> None:
        """Run ``write(*args)``, the write of a per-epoch file whose content is already encoded, on the
        trainer's writer thread while the epochs train (``engine.file_writer``: in the order handed over;
        all done before ``after_train`` and when ``fit`` ends or fails; a write's error is raised by the next
        hand-over or that wait), at once otherwise (``after_train``, outside ``fit``)."""
        if self._files_async and self.is_main:
            self._files.submit(write, *args)
        else:
            write(*args)

    def metrics_summary(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: final and best scalars, details of the last evaluation, history."""
        monitor, mode = self.cfg.train.monitor, self.cfg.train.monitor_mode
        scored = [r for r in self.history if r.get(monitor) is not None]
        best = (max if mode == "max" else min)(scored, key=lambda r: r[monitor]) if scored else None
        return {
            "epochs_run": len(self.history),
            "stopped_early_at": self.stopped_early_at,
            "final": self.history[-1] if self.history else {},
            "best": {"epoch": best["epoch"], "monitor": monitor, **best} if best else None,
            "eval": self.eval_details,
            "class_names": self.meta.get("class_names"),
            **({"labels": self.meta["labels"]} if "labels" in self.meta else {}),
            "history": self.history,
        }

    @contextlib.contextmanager
    def evaluation_weights(self) -> Iterator[None]:
        """Runs the ``before_eval`` / ``after_eval`` hooks around the block, so predictions inside it use the
        evaluation weights (e.g. the EMA shadow) like :meth:`evaluate_all` does."""
        self._call("before_eval")
        try:
            yield
        finally:
            self._call("after_eval")

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        self.method.eval()
        try:
            yield
        finally:
            self.method.train()


@dataclasses.dataclass
class Run:
    """A built run (``pipeline.build.build_run``): what train, report, export and compress work on."""

    cfg: Config
    data: Any
    method: TrainableMethod
    loaders: dict[str, Any]
    trainer: Trainer
