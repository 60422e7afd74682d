"""Launched by ``tests/test_distributed.py`` under ``paddle.distributed.launch``: the CLI plus a test-only hook.

The hook (registered here, so no test code ships in the package) makes every rank dump what the test
compares across ranks: the method's clean probabilities after each epoch, the epoch scalars and the final
metrics, and the results of a few collectives run on arrays that differ per rank.

Usage: ``dist_worker.py CLI_ARGS... [--then-resume RUN_COPY DUMP_DIR]``. With ``--then-resume``, after the
CLI command (a ``train`` whose run folder has ``checkpoints/epoch_001.pdckpt``), rank 0 copies the run
folder to RUN_COPY with that checkpoint as ``latest.pdckpt`` and every rank resumes it from epoch 1 with
the dump hook writing to DUMP_DIR: the same launch tests an interrupted-and-resumed run.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import numpy as np

from robust_paddle.cli import main
from robust_paddle.engine import distributed as dist
from robust_paddle.engine.hooks import Hook, write_json
from robust_paddle.registry import HOOKS


def _flat_arrays(state: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts / lists of arrays -> ``{"a/0/b": array}`` (None and non-numeric leaves left out)."""
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        arr = np.asarray(state) if state is not None else None
        return {prefix: arr} if arr is not None and arr.dtype.kind in "biuf" else {}
    out: dict[str, np.ndarray] = {}
    for k, v in items:
        out.update(_flat_arrays(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


@HOOKS.register("dump_rank_state")
class DumpRankState(Hook):
    """Writes ``<folder>/rank<r>/...`` on every rank (the product's hooks write on rank 0 only)."""

    priority = 99
    name = "dump_rank_state"

    def __init__(self, *, folder: str) -> None:
        self.folder = folder

    def _dir(self) -> str:
        path = os.path.join(self.folder, f"rank{dist.rank()}")
        os.makedirs(path, exist_ok=True)
        return path

    def before_train(self, trainer: Any) -> None:
        r = dist.rank()
        gathered = dist.all_gather_array(np.arange(3 * (r + 1), dtype=np.float64).reshape(r + 1, 3) + 10 * r)
        flags = dist.all_gather_array(np.array([r % 2 == 0] * (r + 2)))
        bcast = dist.broadcast_array(np.full((2, 2), r + 1, dtype=np.int32))
        rows = dist.gather_rows(np.array([[r], [r]], dtype=np.int64), np.array([r, r + 2]), total=4)
        write_json(os.path.join(self._dir(), "collectives.json"), {
            "rank": r, "world_size": dist.world_size(), "gathered": [g.tolist() for g in gathered],
            "flags": [f.tolist() for f in flags], "broadcast": bcast.tolist(), "rows": rows.tolist(),
            "sum": dist.all_reduce_sum(np.array([r + 1, 2 * r])).tolist(), "any": dist.any_true(r == 1),
            "mean": dist.mean_scalars({"a": float(r), **({"b": 5.0} if r == 0 else {})}),
            "wrapped": sorted(type(n).__name__ for n in trainer.method.networks.values()),
            "train_batches": len(trainer.loaders["train"])})
        self._save_networks(trainer, trainer.epoch)

    def _save_networks(self, trainer: Any, epoch: int) -> None:
        # per key, so a test can tell frozen from trainable parameters (model.freeze_epochs)
        arrays = {f"{name}/{k}": v.numpy() for name, net in trainer.method.networks.items()
                  for k, v in net.state_dict().items()}
        trainable = sorted(f"{name}/{k}" for name, net in trainer.method.networks.items()
                           for k, p in net.named_parameters() if not p.stop_gradient)
        np.savez(os.path.join(self._dir(), f"networks_epoch{epoch}.npz"), **arrays)
        write_json(os.path.join(self._dir(), f"trainable_epoch{epoch}.json"), trainable)

    def after_epoch(self, trainer: Any) -> None:
        self._save_networks(trainer, trainer.epoch + 1)
        prob = trainer.method.clean_probability()
        if prob is not None:
            np.save(os.path.join(self._dir(), f"clean_prob_epoch{trainer.epoch + 1}.npy"), prob)
        write_json(os.path.join(self._dir(), f"scalars_epoch{trainer.epoch + 1}.json"), trainer.epoch_scalars)
        # the method's own state as flat arrays (ProMix: selections/0, pi, heads/0/weight ...)
        np.savez(os.path.join(self._dir(), f"method_epoch{trainer.epoch + 1}.npz"),
                 **_flat_arrays(trainer.method.state_dict()))
        # every parameter and BN statistic: the ranks must hold identical networks after each epoch
        state = [v.numpy().astype(np.float64).ravel() for net in trainer.method.networks.values()
                 for v in net.state_dict().values()]
        # and the method's own trainable tensors (DivideMix's learned transition matrices, warmup: volmin)
        state += [np.asarray(w, np.float64).ravel() for w in trainer.method.state_dict().get("transitions", [])]
        np.save(os.path.join(self._dir(), f"weights_epoch{trainer.epoch + 1}.npy"), np.concatenate(state))

    def after_train(self, trainer: Any) -> None:
        summary = trainer.metrics_summary()
        write_json(os.path.join(self._dir(), "final.json"), {"final": summary["final"], "eval": summary["eval"]})


def run(argv: list[str]) -> int:
    if "--then-resume" not in argv:
        return main(argv)
    cut = argv.index("--then-resume")
    first, (copy, dump) = argv[:cut], argv[cut + 1:cut + 3]
    code = main(first)
    if code:
        return code
    if dist.is_main():
        out = next(a.split("=", 1)[1] for a in first if a.startswith("output_dir="))  # the -o output_dir=
        shutil.copytree(out, copy)
        ck = os.path.join(copy, "checkpoints")
        shutil.copyfile(os.path.join(ck, "epoch_001.pdckpt"), os.path.join(ck, "latest.pdckpt"))
    dist.barrier()
    return main(["train", "--resume", copy, "-o", f"train.hooks=[{{name: dump_rank_state, folder: {dump}}}]"])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
