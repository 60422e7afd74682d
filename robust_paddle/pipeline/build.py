"""Assembling a run from a Config: data, method, optimizer, scheduler -> Trainer.

``build_run(cfg, output_dir=..., hooks=...)`` builds a fresh run; ``load_run(cfg, checkpoint)`` rebuilds the
method with a checkpoint's weights for eval / report / export / compress. The entry points that use them are
``pipeline.run`` (train, evaluate), ``pipeline.kfold`` and ``pipeline.commands`` (report, export, compress).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import paddle

from robust_paddle.config import Config
from robust_paddle.data import build_data, build_loader
from robust_paddle.data.imagecheck import write_skipped_files
from robust_paddle.engine import distributed as dist
from robust_paddle.engine.checkpoint import check_signature, load_checkpoint
from robust_paddle.engine.trainer import Run, Trainer, seed_everything
from robust_paddle.errors import ConfigError
from robust_paddle.losses import build_loss
from robust_paddle.methods import MethodContext, build_method
from robust_paddle.models import build_model
from robust_paddle.optim import build_optimizer, build_scheduler
from robust_paddle.pipeline.finetune import finetune_hooks, init_weights
from robust_paddle.pipeline.label_workflow import annotation_targets, label_source_summary

__all__ = ["Run", "build_run", "check_monitor", "load_run", "make_context", "make_loaders", "model_meta", "set_device"]

logger = logging.getLogger(__name__)


def set_device(name: str) -> str:
    """Select ``cpu``/``gpu``; ``auto`` picks the GPU when Paddle sees one."""
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if name == "gpu" and not has_gpu:
        raise ConfigError("train.device: 'gpu' asked for but Paddle sees no CUDA device; use 'cpu' or 'auto'")
    device = "gpu" if name == "gpu" or (name == "auto" and has_gpu) else "cpu"
    if device == "gpu" and paddle.distributed.get_world_size() > 1:
        device = f"gpu:{paddle.distributed.ParallelEnv().device_id}"
    paddle.set_device(device)
    return device


def text_model_kwargs(cfg: Config, data: Any) -> dict[str, Any]:
    """The vocabulary / window arguments a text model takes from the data (``DataBundle.model_kwargs``)."""
    extra = dict(getattr(data, "model_kwargs", None) or {})
    if getattr(data, "tokenizer", None) is None:
        return extra
    from robust_paddle.models.text import TEXT_MODELS

    if cfg.model.name not in TEXT_MODELS:
        raise ConfigError(f"model.name: {cfg.model.name!r} does not read token ids; dataset {cfg.data.name!r} holds "
                          f"texts: choose one of {', '.join(TEXT_MODELS)}")
    clash = sorted(set(extra) & set(cfg.model.params))
    if clash:
        raise ConfigError(f"model.params.{clash[0]} comes from the data (tokenizer / data.text); remove it")
    return extra


def make_context(cfg: Config, data: Any) -> MethodContext:
    extra = text_model_kwargs(cfg, data)

    def network() -> paddle.nn.Layer:
        return build_model(cfg.model.name, num_classes=data.num_classes, input_shape=tuple(data.input_shape),
                           **cfg.model.params, **extra)

    weight = None
    if cfg.loss.class_weighting != "none":  # class weights from the (noisy) training labels
        if "weight" in cfg.loss.params:
            raise ConfigError(f"loss.params.weight and loss.class_weighting={cfg.loss.class_weighting!r} both set "
                             "class weights; keep one of them")
        from robust_paddle.data.imbalance import class_weights

        weight = class_weights(np.asarray(data.train.labels), num_classes=data.num_classes,
                               method=cfg.loss.class_weighting, beta=cfg.loss.class_weighting_beta).tolist()

    def loss(name: str | None = None, **overrides: Any) -> paddle.nn.Layer:
        params = dict(cfg.loss.params) if name is None else {}
        if name is None and weight is not None:
            params["weight"] = weight
        params.update(overrides)
        return build_loss(name or cfg.loss.name, num_classes=data.num_classes, **params)

    return MethodContext(cfg=cfg, num_classes=data.num_classes, input_shape=tuple(data.input_shape),
                         train_labels=np.asarray(data.train.labels, dtype=np.int64),
                         clean_labels=None if data.train.clean_labels is None else np.asarray(data.train.clean_labels),
                         build_network=network, build_loss=loss, **annotation_targets(cfg, data))


def make_loaders(cfg: Config, data: Any, *, num_replicas: int = 1, rank: int = 0) -> dict[str, Any]:
    """train (shuffled by ``(seed, epoch)``; data parallel: this rank's part of every global batch),
    train_eval, val and test loaders (whole splits; the trainer shards those per pass)."""
    d = cfg.data
    sampler = None
    if d.sampler == "weighted":  # class-weighted draws with replacement, reproducible per (seed, epoch)
        from robust_paddle.data.imbalance import build_weighted_sampler

        sampler = build_weighted_sampler(data.train, batch_size=d.batch_size, seed=cfg.seed,
                                         method=d.sampler_weighting, beta=d.sampler_beta)
    loaders = {
        "train": build_loader(data.train, batch_size=d.batch_size, shuffle=True, seed=cfg.seed,
                              num_workers=d.num_workers, batch_sampler=sampler, num_replicas=num_replicas,
                              rank=rank),
        "train_eval": build_loader(data.train_eval, batch_size=d.eval_batch_size, shuffle=False, seed=cfg.seed,
                                   num_workers=d.num_workers),
    }
    for split in ("val", "test"):
        ds = getattr(data, split)
        loaders[split] = None if ds is None or len(ds) == 0 else build_loader(
            ds, batch_size=d.eval_batch_size, shuffle=False, seed=cfg.seed, num_workers=d.num_workers)
    return loaders


def model_meta(data: Any) -> dict[str, Any]:
    meta = {"num_classes": int(data.num_classes), "input_shape": [int(s) for s in data.input_shape],
            "class_names": list(data.class_names), "mean": data.mean, "std": data.std,
            "dataset": data.name if hasattr(data, "name") else None,
            **({"labels": labels} if (labels := label_source_summary(data)) else {})}
    tok = getattr(data, "tokenizer", None)
    if tok is not None:  # what a text checkpoint needs to be read back with the same ids
        meta["text"] = {"tokenizer": tok.kind, "vocab_size": tok.vocab_size, "max_length": tok.max_length,
                        "truncation": tok.truncation, "head_tokens": tok.head_tokens}
    return meta


def model_signature(cfg: Config, data: Any, networks: Any) -> dict[str, Any]:
    """What a checkpoint's weights only make sense with: the model and its params, the method and its
    network names, classes, input shape, normalisation, and for text data the tokenizer (kind, length rule,
    normalisation, special tokens and a SHA-256 of its vocabulary/model, so ids mean the same tokens).
    Recorded in ``meta.signature``; compared by :func:`load_run` and ``--resume``."""
    import hashlib
    import json

    sig = {"model": cfg.model.name, "model_params": json.loads(json.dumps(cfg.model.params)),
           "method": cfg.method.name, "networks": sorted(networks), "num_classes": int(data.num_classes),
           "input_shape": [int(s) for s in data.input_shape],
           "mean": None if data.mean is None else [float(v) for v in data.mean],
           "std": None if data.std is None else [float(v) for v in data.std]}
    tok = getattr(data, "tokenizer", None)
    if tok is not None:
        ids = hashlib.sha256(json.dumps([list(tok.vocab), tok.hf_json]).encode("utf-8")).hexdigest()[:16]
        sig["tokenizer"] = {"kind": tok.kind, "vocab_size": int(tok.vocab_size), "max_length": int(tok.max_length),
                            "truncation": tok.truncation, "head_tokens": int(tok.head_tokens),
                            "lowercase": bool(tok.lowercase), "nfkc": bool(tok.nfkc),
                            "special": [tok.pad_token, tok.unk_token, tok.sep_token, *tok.extra_special_tokens],
                            "vocab_sha256": ids}
    return sig


def build_run(cfg: Config, *, output_dir: str, hooks: list | None = None, data: Any = None,
              distributed: bool = False, start_weights: bool = False) -> Run:
    """Build data, method, optimizer, scheduler and trainer (seeded by ``cfg.seed``).

    ``hooks``: the trainer's hooks; none by default (a training run passes
    ``pipeline.hooks.build_hooks(cfg.train)``, see ``pipeline.run.train``).

    ``data``: a prebuilt DataBundle to train on instead of ``build_data(cfg)`` (e.g. a cross-validation
    fold, see ``pipeline.kfold.cross_val_pred_probs``). ``distributed``: data parallel over the launched
    processes (``robust_paddle.engine.distributed.init`` first; every rank must call this); off for eval, export
    and anything rank 0 builds alone. ``start_weights``: load ``model.pretrained`` / ``train.init_from``
    (a new run; not for resume, eval or export, whose weights come from their checkpoint).
    """
    set_device(cfg.train.device)
    seed_everything(cfg.seed)
    data = build_data(cfg, run_dir=output_dir) if data is None else data
    if getattr(data, "skipped", None) and dist.rank() == 0:  # data.on_bad_sample: skip
        logger.warning("left out %d unreadable file(s), listed in %s", len(data.skipped),
                       write_skipped_files(output_dir, data.skipped))
    check_monitor(cfg, data)
    method = build_method(cfg, make_context(cfg, data))
    if start_weights:
        init_weights(cfg, method, data, out_dir=output_dir if dist.rank() == 0 else None)
    extra_hooks = finetune_hooks(cfg, method)  # sets the backbone lr multiplier before the optimizer exists
    data.train.extra_views = method.loader_views(data.train)  # views the method wants, made in the workers
    shard = {"num_replicas": dist.world_size(), "rank": dist.rank()} if distributed else {}
    loaders = make_loaders(cfg, data, **shard)
    steps_per_epoch = max(1, -(-len(loaders["train"]) // cfg.train.accumulate_steps))
    scheduler = build_scheduler(cfg.scheduler, base_lr=cfg.optimizer.lr, epochs=cfg.train.epochs,
                                steps_per_epoch=steps_per_epoch)
    # gradient clipping happens in the trainer (global over every parameter group), not in the optimizer
    optimizer = build_optimizer(cfg.optimizer, method.parameters(), learning_rate=scheduler)
    trainer = Trainer(cfg, method, loaders, optimizer=optimizer, scheduler=scheduler,
                      hooks=list(hooks or []) + extra_hooks, output_dir=output_dir,
                      meta={**model_meta(data), "signature": model_signature(cfg, data, method.networks)},
                      data=data, distributed=distributed)
    return Run(cfg=cfg, data=data, method=method, loaders=loaders, trainer=trainer)


def check_monitor(cfg: Config, data: Any) -> None:
    split = cfg.train.monitor.split("/", 1)[0]
    if split in ("val", "test") and (getattr(data, split) is None or len(getattr(data, split)) == 0):
        raise ConfigError(f"train.monitor is {cfg.train.monitor!r} but the run has no {split} split; "
                         f"set data.{split}_split > 0 (or a data.{split}_path), or pick another train.monitor")


def load_run(cfg: Config, checkpoint: str, *, output_dir: str | None = None,
             state: dict[str, Any] | None = None) -> Run:
    """Rebuild the run described by ``cfg`` and load ``checkpoint``'s networks and method state.

    ``state``: the checkpoint already loaded (saves reading it twice).

    Raises:
        CheckpointError: unreadable/unsafe checkpoint, or one whose model signature (model, params, method,
            networks, classes, input shape, normalisation) differs from the config's -- every mismatch named;
            or weights that do not fit the network (missing, unexpected, mis-shaped keys).
    """
    state = load_checkpoint(checkpoint) if state is None else state
    run = build_run(cfg, output_dir=output_dir or os.path.dirname(os.path.dirname(os.path.abspath(checkpoint))),
                    hooks=[])
    check_signature(state, run.trainer.meta["signature"], source=checkpoint)
    run.trainer.load_state_dict(state, source=checkpoint)
    return run


def compile_networks(method: Any) -> None:
    """``train.compile: to_static``: each network's ``forward`` becomes a static program
    (``paddle.jit.to_static`` converts the Layer in place, so every reference to it sees the change; the
    parameters, their gradients and ``state_dict`` are the same objects)."""
    for net in method.networks.values():
        paddle.jit.to_static(net)
