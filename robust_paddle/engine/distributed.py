"""Multi-process data parallelism on ``paddle.distributed``: ranks, collectives over numpy arrays, and the
``paddle.DataParallel`` wrapping of a method's networks.

Launch the usual CLI under Paddle's own launcher (``docs/distributed.md``)::

    python -m paddle.distributed.launch --nproc_per_node 2 robust_paddle/cli.py train -c CFG   # CPU: gloo
    python -m paddle.distributed.launch --devices 0,1,2,3 robust_paddle/cli.py train -c CFG    # GPUs: NCCL

The contract the trainer keeps (``engine/trainer.py``, ``engine/run.py``):

* ``data.batch_size`` is the **global** batch. Every rank walks the same ``(seed, epoch)`` order
  (``data.EpochBatchSampler``) and takes its contiguous share of each global batch, so N processes see
  the same global batches as one process and the run stays a function of ``(seed, epoch)``.
* Every network of the method is a :class:`DistributedNetwork` (a ``paddle.DataParallel`` that also
  exposes the wrapped model's attributes and parameter names); gradients are averaged across ranks in
  backward. Checkpoints hold the unwrapped ``state_dict``, identical in keys to a one-process run.
* Per-sample passes (evaluation, the GMM division) run on every rank over its shard; the rows are
  all-gathered and put back in dataset order (:func:`gather_rows`), so every rank holds the same arrays.
* Only rank 0 writes files (checkpoints, metrics.json, VisualDL, reports): hooks check ``trainer.is_main``.

Functions here are safe in one process (they return their input or do nothing), so callers need no
``if distributed`` branches. Every collective must be called by all ranks, in the same order.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import paddle
import paddle.distributed as pdist

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- process group
def world_size() -> int:
    """Number of processes of the job (1 without the launcher); read from the launcher's environment."""
    return int(pdist.get_world_size())


def rank() -> int:
    """This process's global rank in ``[0, world_size())`` (0 without the launcher)."""
    return int(pdist.get_rank())


def is_main() -> bool:
    """Whether this is rank 0, the only process that writes files."""
    return rank() == 0


def is_distributed() -> bool:
    """More than one process and the process group is initialised (collectives are live)."""
    return world_size() > 1 and pdist.is_initialized()


def init(*, cpu: bool = False) -> bool:
    """Initialise the process group when the launcher started more than one process.

    Args:
        cpu: force the gloo backend (CPU tensors) even in a CUDA build of Paddle. A CPU-only build, or a
            CUDA build that sees no GPU, uses gloo anyway (``paddle.distributed.launch`` sets
            ``PADDLE_DISTRI_BACKEND=gloo`` on CPU-only builds itself).

    Returns:
        True when running data-parallel (world size > 1), False for a plain one-process run.
    """
    if world_size() < 2:
        return False
    if not pdist.is_initialized():
        gpus = paddle.device.cuda.device_count() if paddle.device.is_compiled_with_cuda() else 0
        if cpu or not (gpus or paddle.device.is_compiled_with_xpu()):
            # gloo is the only CPU backend; without it a CPU build falls back to a context that has no
            # process group, and eager collectives (all_reduce, all_gather) would fail
            os.environ.setdefault("PADDLE_DISTRI_BACKEND", "gloo")
        pdist.init_parallel_env()
        logger.info("data parallel: rank %d of %d (backend %s)", rank(), world_size(),
                    os.environ.get("PADDLE_DISTRI_BACKEND", "auto"))
    return True


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        pdist.barrier()


# ------------------------------------------------------------------------------------- collectives
def _to_tensor(array: np.ndarray) -> paddle.Tensor:
    return paddle.to_tensor(np.ascontiguousarray(array))


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = []
    pdist.all_gather_object(out, obj)
    return out


def all_gather_array(array: np.ndarray) -> list[np.ndarray]:
    """Every rank's numpy array, in rank order; shapes may differ between ranks, dtypes may not.

    The arrays travel as raw bytes in one padded ``uint8`` all-gather (any dtype, NCCL or gloo).

    Args:
        array: this rank's array, any shape.

    Returns:
        ``world_size()`` arrays; entry ``r`` is rank r's array (``[array]`` in one process).
    """
    arr = np.ascontiguousarray(array)
    if not is_distributed():
        return [arr]
    headers = all_gather_object((arr.shape, arr.dtype.str))
    dtypes = {h[1] for h in headers}
    if len(dtypes) > 1:
        raise ValueError(f"all_gather_array: ranks passed different dtypes {sorted(dtypes)}; cast them to one")
    sizes = [int(np.prod(s, dtype=np.int64)) * arr.dtype.itemsize for s, _ in headers]
    longest = max(max(sizes), 1)
    buf = np.zeros(longest, dtype=np.uint8)
    buf[:arr.nbytes] = arr.reshape(-1).view(np.uint8)
    parts: list[paddle.Tensor] = []
    pdist.all_gather(parts, _to_tensor(buf))
    return [p.numpy()[:n].view(arr.dtype).reshape(shape) for p, n, (shape, _) in zip(parts, sizes, headers)]


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks of equally shaped arrays (int -> int64, float -> float64)."""
    arr = np.asarray(array)
    arr = arr.astype(np.int64 if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool else np.float64)
    if not is_distributed():
        return arr
    t = _to_tensor(arr)
    pdist.all_reduce(t, op=pdist.ReduceOp.SUM)
    return t.numpy()


def any_true(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (so every rank takes the same branch)."""
    return bool(all_reduce_sum(np.array([int(bool(flag))]))[0] > 0)


def mean_scalars(values: Mapping[str, float]) -> dict[str, float]:
    """Average named scalars over ranks; a key missing on some rank is averaged over the ranks having it."""
    if not is_distributed():
        return dict(values)
    gathered = all_gather_object({k: float(v) for k, v in values.items()})
    keys = sorted({k for d in gathered for k in d})
    return {k: float(np.mean([d[k] for d in gathered if k in d])) for k in keys}


def broadcast_array(array: np.ndarray | None, *, src: int = 0) -> np.ndarray | None:
    """Rank ``src``'s array (or None) on every rank; the other ranks' inputs are ignored."""
    if not is_distributed():
        return array
    header = [None if array is None else (np.asarray(array).shape, np.asarray(array).dtype.str)]
    pdist.broadcast_object_list(header, src=src)
    if header[0] is None:
        return None
    shape, dtype = header[0]
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buf = np.zeros(max(nbytes, 1), dtype=np.uint8)
    if rank() == src:
        buf[:nbytes] = np.ascontiguousarray(array, dtype=dtype).reshape(-1).view(np.uint8)
    t = _to_tensor(buf)
    pdist.broadcast(t, src=src)
    return t.numpy()[:nbytes].view(dtype).reshape(shape).copy()


def gather_rows(values: np.ndarray, positions: np.ndarray, *, total: int) -> np.ndarray:
    """Assemble rows computed on every rank's shard into one array in dataset order, on every rank.

    Args:
        values: [n_r, ...] this rank's rows.
        positions: [n_r] int, the position (0..total-1) of each row; a position may appear on several
            ranks (a padded shard), every copy must hold the same row.
        total: number of rows of the result.

    Returns:
        [total, ...] rows ordered by position (``values`` reordered in one process).

    Raises:
        RuntimeError: the ranks' positions do not cover ``0..total-1``.
    """
    values, positions = np.asarray(values), np.asarray(positions, dtype=np.int64).reshape(-1)
    if values.shape[0] != positions.shape[0]:
        raise ValueError(f"gather_rows: {values.shape[0]} rows but {positions.shape[0]} positions")
    vals, poss = all_gather_array(values), all_gather_array(positions)
    out = np.empty((total, *values.shape[1:]), dtype=values.dtype)
    seen = np.zeros(total, dtype=bool)
    for v, p in zip(vals, poss):
        out[p] = v
        seen[p] = True
    if not seen.all():
        raise RuntimeError(f"gather_rows: the ranks' shards covered {int(seen.sum())} of {total} rows")
    return out


# ------------------------------------------------------------------------------------- networks
class DistributedNetwork(paddle.DataParallel):
    """``paddle.DataParallel`` that stays a drop-in for the network it wraps.

    Methods call their networks themselves (``net(x)``, ``net.forward_features(x)``, ``net.classifier``), so
    the wrapper forwards unknown attributes to the wrapped layer, and ``named_parameters`` (used by SWA)
    and ``state_dict`` (DataParallel's own) use the wrapped layer's names: no ``_layers.`` prefix, so
    checkpoints and hook states have the keys of a one-process run. Gradients are averaged across ranks by
    DataParallel's reducer during ``backward`` after a ``forward`` through the wrapper.

    Args:
        layer: the network to wrap (after ``paddle.amp.decorate`` when AMP O2 is used).
        find_unused_parameters: DataParallel's option, for networks with parameters a forward may skip.
    """

    def __init__(self, layer: paddle.nn.Layer, *, find_unused_parameters: bool = False) -> None:
        super().__init__(layer, find_unused_parameters=find_unused_parameters)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_sub_layers", {}).get("_layers")
            if inner is None:
                raise
            return getattr(inner, name)

    def named_parameters(self, prefix: str = "", include_sublayers: bool = True) -> Iterator[tuple[str, Any]]:
        return self._layers.named_parameters(prefix=prefix, include_sublayers=include_sublayers)


def unwrap(layer: paddle.nn.Layer) -> paddle.nn.Layer:
    """The network inside a ``paddle.DataParallel`` (the layer itself otherwise)."""
    return layer._layers if isinstance(layer, paddle.DataParallel) else layer


def wrap_networks(networks: Mapping[str, paddle.nn.Layer], *,
                  find_unused_parameters: bool = False) -> dict[str, paddle.nn.Layer]:
    """``{name: DistributedNetwork(net)}``; already wrapped networks are kept. Rank 0's weights are
    broadcast to every rank on construction (a collective: call on all ranks).

    Args:
        find_unused_parameters: needed when parameters switch ``stop_gradient`` during training
            (``model.freeze_epochs``). DataParallel's reducer waits for a gradient of every parameter that
            was trainable when it was built: with a frozen backbone those gradients never come, and (Paddle
            2.6.2 and 3.3.1) the reducer then skips the all-reduce of the head's group as well (or raises on the
            next forward), and after unfreezing it no longer all-reduces the backbone's gradients at all,
            so the ranks drift apart silently (found by ``tests/engine/test_distributed.py``'s freeze
            test). With this option the reducer walks each backward's graph and reduces what is in it,
            at the cost of that walk per step.
    """
    return {k: v if isinstance(v, paddle.DataParallel) else
            DistributedNetwork(v, find_unused_parameters=find_unused_parameters) for k, v in networks.items()}


def broadcast_buffers(networks: Mapping[str, paddle.nn.Layer], *, src: int = 0) -> None:
    """Copy rank ``src``'s non-trainable state (BatchNorm running statistics, buffers) to every rank.

    DataParallel averages gradients, so parameters stay equal, but each rank's BatchNorm layers track the
    statistics of its own shard. Syncing them after each epoch makes every rank's eval-mode network equal
    to rank 0's, the one its checkpoint holds.
    """
    if not is_distributed():
        return
    for net in networks.values():
        inner = unwrap(net)
        # Paddle keeps BatchNorm's running mean/variance as non-trainable parameters, not buffers
        frozen = [p for p in inner.parameters() if p.stop_gradient]
        for t in frozen + list(inner.buffers()):
            if t is not None and t.numel() > 0:
                pdist.broadcast(t, src=src)


def prepare_backward(networks: Mapping[str, paddle.nn.Layer], loss: paddle.Tensor) -> None:
    """Arm DataParallel's gradient all-reduce for the coming ``loss.backward()``.

    DataParallel arms its reducer in its own ``forward``. A method that reaches the model through
    ``forward_features`` / ``classifier`` (the adversarial embedding path of ``standard``) bypasses that
    forward, and its backward would then skip the all-reduce without an error, letting the ranks drift
    apart. The trainer therefore re-arms every wrapped network before each synchronised backward, which
    is what ``DataParallel.forward`` does and is idempotent (no-op inside :func:`no_sync`).
    """
    for net in networks.values():
        reducer = getattr(net, "_reducer", None) if isinstance(net, paddle.DataParallel) else None
        if reducer is not None and net.grad_need_sync:
            reducer.prepare_for_backward(list(net._find_tensor(loss)))


def average_gradient_across_ranks(param: paddle.Tensor) -> None:
    """Make ``param``'s gradient the mean over ranks, for a trainable tensor that is not inside a DataParallel
    network (whose reducer would otherwise average it): a gradient hook all-reduces every backward's
    gradient. Under gradient accumulation each micro-batch's gradient is averaged, so the accumulated sum
    is the same as averaging once. A no-op without data parallelism; call on every rank."""
    if not is_distributed():
        return
    size = world_size()

    def hook(grad: paddle.Tensor) -> paddle.Tensor:
        total = grad.clone()
        pdist.all_reduce(total, op=pdist.ReduceOp.SUM)
        return total / size

    param.register_hook(hook)


@contextlib.contextmanager
def no_sync(networks: Mapping[str, paddle.nn.Layer], *, enabled: bool = True) -> Iterator[None]:
    """Skip the gradient all-reduce inside the block (gradient accumulation: only the group's last
    backward synchronises, the accumulated gradients are averaged then)."""
    with contextlib.ExitStack() as stack:
        if enabled:
            for net in networks.values():
                if isinstance(net, paddle.DataParallel):
                    stack.enter_context(net.no_sync())
        yield


# ------------------------------------------------------------------------------------- loaders
def shard_loader(loader: paddle.io.DataLoader, *, num_replicas: int | None = None,
                 replica: int | None = None) -> paddle.io.DataLoader:
    """A loader over this rank's shard of ``loader``'s dataset, in dataset order, for per-sample passes.

    The shard is this rank's contiguous part of every batch of ``loader``'s batch size (the same split
    as the training sampler); :func:`gather_rows` with the yielded indices puts the results back together.

    Args:
        loader: an unshuffled evaluation loader (``data.build_loader``).
        num_replicas: ranks (default ``world_size()``); replica: the shard to take (default ``rank()``).
    """
    from robust_paddle.data import EpochBatchSampler, build_loader

    n_rep = world_size() if num_replicas is None else num_replicas
    r = rank() if replica is None else replica
    old = loader.batch_sampler
    sampler = EpochBatchSampler(loader.dataset, batch_size=int(old.batch_size), shuffle=False,
                                seed=int(getattr(old, "seed", 0)), num_replicas=n_rep, rank=r)
    return build_loader(loader.dataset, batch_size=sampler.batch_size, shuffle=False, seed=sampler.seed,
                        num_workers=int(getattr(loader, "num_workers", 0)), batch_sampler=sampler)
