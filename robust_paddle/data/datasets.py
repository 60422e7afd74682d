"""In-memory / path-backed datasets returning ``(x, label, index)`` and epoch-seeded loaders."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from multiprocessing.reduction import ForkingPickler

import numpy as np
import paddle

from robust_paddle import _compat
from robust_paddle.data.noise import check_labels
from robust_paddle.data.transforms import Pipeline
from robust_paddle.errors import DataError

logger = logging.getLogger(__name__)


class RowView:
    """Rows ``rows`` of an array (a memory-mapped ``.npy``) without copying them: ``view[i]`` reads one row.

    Fancy indexing a ``numpy.memmap`` copies the selected rows into memory; a split of a memory-mapped source
    keeps this view instead, so per-split state is the [N] int64 row numbers.
    """

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base, self.rows = base, np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows),) + tuple(self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return np.asarray(self.base[self.rows[index]])
        return RowView(self.base, self.rows[index])


def _reopen_memmap(filename: str, dtype: str, mode: str, offset: int, shape: tuple[int, ...]) -> np.memmap:
    return np.memmap(filename, dtype=np.dtype(dtype), mode=mode, offset=offset, shape=shape)


def _reduce_memmap(arr: np.memmap):
    """How a ``numpy.memmap`` travels to a DataLoader worker (``multiprocessing`` pickling only): a map of a
    whole file (what ``np.load(mmap_mode="r")`` returns) as its file name, re-opened there, instead of a copy
    of every byte; any other map (a slice of one) as a plain in-memory array."""
    filename = getattr(arr, "filename", None)
    try:
        whole = bool(filename) and arr.flags.c_contiguous and arr.offset + arr.nbytes == os.path.getsize(filename)
    except OSError:
        whole = False
    if whole:
        mode = "r+" if arr.mode == "w+" else arr.mode  # "w+" would create the file anew
        return _reopen_memmap, (filename, arr.dtype.str, mode, int(arr.offset), tuple(arr.shape))
    return np.asarray(arr).__reduce__()


ForkingPickler.register(np.memmap, _reduce_memmap)


class ArrayDataset(paddle.io.Dataset):
    """Samples stored as an array or as image paths, decoded and normalised by a :class:`Pipeline`.

    ``__getitem__(i)`` returns ``(x float32 [C, H, W] or [D], label int64, index int64)``. ``labels`` are
    the labels training sees (noisy); ``clean_labels`` the true ones when known, else None. Mutating
    ``labels`` in place (relabelling) is seen by every dataset that shares the array (``train`` and
    ``train_eval`` do).

    Sample identity: ``index`` (what ``__getitem__`` returns and every per-sample output calls ``index``) is
    the position in this dataset; ``source_rows[index]`` is the sample's row in the source the user gave
    (row of the npz arrays, entry of the file list, position in the sorted image-folder scan, row of the
    dataset's train split), ``paths[index]`` its file for path-backed data and ``ids[index]`` the source's own
    id column when it has one (``ids`` array of an npz), else ``ids`` is None.

    Args:
        data: [N, H, W, C] images / [N, D] features (an array, a ``numpy.memmap`` or a :class:`RowView` of
            one: rows are read per sample), or N image file paths (decoded per sample, in the loader's workers).
        labels: [N] int.
        num_classes: C; labels must be in [0, C).
        pipeline: how a stored sample becomes the model input.
        clean_labels: [N] int or None.
        class_names: C names.
        source_rows: [N] int, each sample's row in the user's source; default ``0..N-1``.
        ids: [N] the source's id column (ints or strings), or None.
    """

    def __init__(self, data: np.ndarray | Sequence[str], labels: np.ndarray, *, num_classes: int,
                 pipeline: Pipeline, clean_labels: np.ndarray | None = None,
                 class_names: Sequence[str] | None = None, source_rows: np.ndarray | None = None,
                 ids: np.ndarray | None = None) -> None:
        super().__init__()
        self.data = data if isinstance(data, (np.ndarray, RowView)) else list(data)
        self.labels = check_labels(labels, num_classes)
        if len(self.data) != self.labels.shape[0]:
            raise DataError(f"dataset has {len(self.data)} samples but {self.labels.shape[0]} labels")
        self.clean_labels = None
        if clean_labels is not None:
            self.clean_labels = check_labels(clean_labels, num_classes, field="clean_labels")
            if self.clean_labels.shape != self.labels.shape:
                raise DataError(f"clean_labels has {self.clean_labels.shape[0]} entries, labels has "
                                 f"{self.labels.shape[0]}")
        n = self.labels.shape[0]
        self.source_rows = np.arange(n, dtype=np.int64) if source_rows is None else np.asarray(source_rows, np.int64)
        self.ids = None if ids is None else np.asarray(ids)
        for name, arr in (("source_rows", self.source_rows), ("ids", self.ids)):
            if arr is not None and arr.shape != (n,):
                raise DataError(f"{name} has shape {arr.shape}; the dataset has {n} samples")
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.pipeline = pipeline
        self.epoch = 0

    @property
    def paths(self) -> list[str] | None:
        """Image paths for file-backed datasets, else None."""
        return self.data if isinstance(self.data, list) else None

    @property
    def texts(self) -> np.ndarray | None:
        """The texts (or ``(text, pair)`` tuples) of a text dataset, else None."""
        return self.data if getattr(self.pipeline, "kind", None) == "text" else None

    def set_epoch(self, epoch: int) -> None:
        """Epoch used to seed augmentation (called by the loader's batch sampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def get_x(self, index: int, *, epoch: int | None = None, view: int = 0, strong: bool = False) -> np.ndarray:
        """Model input of sample ``index``; ``view`` > 0 gives further independent augmentations, ``strong``
        the strong augmentation (``data.strong_augment``) for methods that ask for a weak and a strong view."""
        return self.pipeline.load(self.data[index], index=index, epoch=self.epoch if epoch is None else epoch,
                                  view=view, strong=strong)

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """Shape of one model input (``[C, H, W]`` or ``[D]``), None when only decoding a file can tell."""
        if self.pipeline.kind == "text":
            return (int(self.pipeline.tokenizer.max_length),)
        if isinstance(self.data, np.ndarray):
            if self.pipeline.kind == "tabular" or self.data.ndim == 2:
                return (int(self.data.shape[1]),)
            return (int(self.data.shape[3]), int(self.data.shape[1]), int(self.data.shape[2]))
        p = self.pipeline
        if p.size:
            return (p.channels, p.size, p.size)
        return (p.channels, *p.shape_hw) if p.shape_hw[0] else None

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        """``(x, label, index)``, then one input per ``extra_views`` entry (``(view, strong)`` pairs the run
        sets for a method that asks, ``Method.loader_views``): computed here, i.e. in the loader's workers."""
        index = int(index)
        views = self.__dict__.get("extra_views", ())
        try:
            xs = [self.get_x(index)] + [self.get_x(index, view=v, strong=s) for v, s in views]
        except Exception as e:  # noqa: BLE001 - reported as one line by CheckedDataLoader (see LoadFailures)
            failures, shape = self.__dict__.get("_failures"), self.sample_shape
            if failures is None or shape is None or not _in_loader():
                raise
            failures.record(index, self.describe_failure(index, e))
            xs = [np.zeros(shape, dtype=np.float32)] * (1 + len(views))  # never trained on: the loader raises first
        return (xs[0], np.int64(self.labels[index]), np.int64(index), *xs[1:])

    @property
    def batchable(self) -> bool:
        """Whether :meth:`get_batch` can gather whole batches: in-memory array rows (not files, not a
        memory-mapped view) through a :class:`Pipeline` that augments none of the views asked for."""
        views = [False] + [bool(strong) for _view, strong in self.__dict__.get("extra_views", ())]
        return (type(self.data) is np.ndarray and isinstance(self.pipeline, Pipeline)
                and not any(self.pipeline._strong_ops if strong else self.pipeline._ops for strong in views))

    def get_batch(self, indices: Sequence[int]) -> tuple[np.ndarray, ...]:
        """``(x [B, ...], labels [B], indices [B], *views)`` of the rows ``indices``, gathered and normalised at
        once: equal to stacking ``self[i]`` (what ``paddle.io.DataLoader`` collates), without the per-sample
        Python calls. Only for a :attr:`batchable` dataset.

        Raises:
            DataError: the dataset is not batchable.
        """
        if not self.batchable:
            raise DataError("get_batch: this dataset reads files or augments; load samples one by one")
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.data[idx]
        views = self.__dict__.get("extra_views", ())
        xs = [self.pipeline.load_batch(rows, strong=bool(strong)) for _view, strong in ((0, False), *views)]
        return (xs[0], self.labels[idx].astype(np.int64), idx, *xs[1:])

    def describe_failure(self, index: int, error: BaseException) -> str:
        """One line naming the sample (its file) and why it could not be loaded."""
        if isinstance(error, DataError):
            return str(error).split("\n")[0]
        what = self.data[index] if isinstance(self.data, list) else f"sample {index}"
        text = str(error).split("\n")[0].strip()
        return f"{what}: cannot load the sample: {type(error).__name__}{': ' + text if text else ''}"

    def with_pipeline(self, pipeline: Pipeline) -> ArrayDataset:
        """Same samples, same ``labels`` array object (shared), another pipeline (e.g. no augmentation)."""
        out = ArrayDataset.__new__(ArrayDataset)
        paddle.io.Dataset.__init__(out)
        out.__dict__.update(self.__dict__)
        out.pipeline, out.epoch, out.extra_views = pipeline, 0, ()
        return out

    def select(self, indices: np.ndarray) -> ArrayDataset:
        """A new dataset holding copies of the rows ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        data = self.data[idx] if isinstance(self.data, np.ndarray) else [self.data[i] for i in idx]
        clean = None if self.clean_labels is None else self.clean_labels[idx]
        return ArrayDataset(data, self.labels[idx], num_classes=self.num_classes, pipeline=self.pipeline,
                            clean_labels=clean, class_names=self.class_names, source_rows=self.source_rows[idx],
                            ids=None if self.ids is None else self.ids[idx])

    def features(self) -> np.ndarray:
        """All samples through the pipeline without augmentation, flattened: [N, D] float32."""
        pipe = self.pipeline.with_augment("none")
        out = [pipe.load(self.data[i], index=i).reshape(-1) for i in range(len(self))]
        return np.stack(out) if out else np.zeros((0, 0), np.float32)

    def __repr__(self) -> str:
        src = "paths" if self.paths is not None else f"{type(self.data).__name__}{tuple(self.data.shape)}"
        return (f"ArrayDataset(n={len(self)}, classes={self.num_classes}, {src}, "
                f"augment={self.pipeline.augment!r})")


class EpochBatchSampler(paddle.io.BatchSampler):
    """Batches whose order is a pure function of ``(seed, epoch)``.

    Call ``set_epoch(epoch)`` before iterating; it also forwards the epoch to the dataset so augmentation
    follows it. A resumed run that sets the same epoch sees exactly the same batches.

    Data parallel (``num_replicas`` > 1, the role of Paddle's ``DistributedBatchSampler``): ``batch_size``
    is the *global* batch; every rank walks the same ``(seed, epoch)`` order and yields its contiguous part
    of each global batch (sizes as ``np.array_split``), so all ranks take ``len(self)`` steps and N
    processes together see the batches of one process. A global batch smaller than ``num_replicas`` (the
    epoch's last) is topped up with the epoch's first samples so no rank gets an empty batch.
    """

    def __init__(self, dataset: paddle.io.Dataset, *, batch_size: int, shuffle: bool, seed: int,
                 drop_last: bool = False, num_replicas: int = 1, rank: int = 0) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be an int >= 1, got {batch_size!r}")
        super().__init__(dataset=dataset, shuffle=False, batch_size=batch_size, drop_last=bool(drop_last))
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self.set_replicas(num_replicas=num_replicas, rank=rank)

    def set_replicas(self, *, num_replicas: int, rank: int) -> None:
        """Shard every global batch over ``num_replicas`` ranks; this sampler yields rank ``rank``'s part."""
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise DataError(f"num_replicas must be an int >= 1, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise DataError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
        self.num_replicas, self.rank = num_replicas, rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """Sample indices of one epoch, [N] int64."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        ep = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng([self.seed % 2**63, ep]).permutation(n).astype(np.int64)

    def __iter__(self):
        order = self.order().tolist()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            batch = order[start:start + self.batch_size]
            yield batch if self.num_replicas == 1 else self.rank_part(batch, order)

    def rank_part(self, batch: list[int], order: list[int]) -> list[int]:
        """This rank's contiguous part of the global ``batch`` (topped up from ``order`` when short)."""
        while len(batch) < self.num_replicas:
            batch = batch + order[:self.num_replicas - len(batch)]
        size, extra = divmod(len(batch), self.num_replicas)
        start = self.rank * size + min(self.rank, extra)
        return batch[start:start + size + (self.rank < extra)]

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _in_loader() -> bool:
    """True inside a DataLoader's reader thread or worker process (a direct ``dataset[i]`` in the main thread
    raises as usual)."""
    return threading.current_thread() is not threading.main_thread() or paddle.io.get_worker_info() is not None


class LoadFailures:
    """The first sample that failed to load, shared by the main process, the DataLoader's reader thread and its
    worker processes (shared memory, handed to the workers when they start).

    Paddle's DataLoader does not survive an exception in ``Dataset.__getitem__``: with ``num_workers=0`` its
    reader thread dies and the main process waits forever; with workers the error reaches the main process
    as "Blocking queue is killed". So :class:`ArrayDataset` catches it, records it here and returns an all-zero
    sample of the right shape; :class:`CheckedDataLoader` raises the recorded error as one
    :class:`~robust_paddle.errors.DataError` before the batch holding that zero sample is used.
    """

    MESSAGE_BYTES = 2048

    def __init__(self) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context(_compat.LOADER_START_METHOD)  # shared with the loader's workers
        self._index = ctx.Value("q", -1)
        self._message = ctx.Array("c", self.MESSAGE_BYTES, lock=False)

    def record(self, index: int, message: str) -> None:
        with self._index.get_lock():
            if self._index.value < 0:
                self._message.value = message.encode("utf-8", errors="replace")[: self.MESSAGE_BYTES - 1]
                self._index.value = int(index)

    def reset(self) -> None:
        with self._index.get_lock():
            self._index.value = -1

    def first(self) -> tuple[int, str] | None:
        """``(index, message)`` of the first failure since the last reset, or None."""
        index = self._index.value
        if index < 0:
            return None
        return index, self._message.value.decode("utf-8", errors="replace")

    def raise_first(self) -> None:
        """Raise the first recorded failure as a :class:`DataError` (nothing when none)."""
        found = self.first()
        if found is not None:
            raise DataError(f"{found[1]} (data.on_bad_sample: skip leaves unreadable files out before training)")


def _array_dataset(dataset: paddle.io.Dataset) -> ArrayDataset | None:
    while dataset is not None and not isinstance(dataset, ArrayDataset):
        dataset = getattr(dataset, "dataset", None)  # paddle.io.Subset and other wrappers
    return dataset


class CheckedDataLoader(paddle.io.DataLoader):
    """A ``paddle.io.DataLoader`` whose iteration ends with one :class:`DataError` naming the sample (file)
    and the reason as soon as any sample fails to load, in the main process, the reader thread or any worker
    (see :class:`LoadFailures`); never a hang."""

    def __init__(self, dataset: paddle.io.Dataset, **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        base = _array_dataset(dataset)
        self.load_failures: LoadFailures | None = None
        if base is not None:
            if base.__dict__.get("_failures") is None:
                base.__dict__["_failures"] = LoadFailures()
            self.load_failures = base.__dict__["_failures"]

    def _start(self):
        """Paddle's iterator for one epoch; its worker processes (if any) start here, from a fork server (see
        ``_compat.loader_workers``: forked from the training process they can hang on Paddle 3.3)."""
        if not self.num_workers:
            return super().__iter__()
        with _compat.loader_workers():
            return super().__iter__()

    def __iter__(self):
        if self.num_workers == 0 and isinstance(self.dataset, ArrayDataset) and self.dataset.batchable:
            yield from self._gathered()
            return
        failures = self.load_failures
        if failures is None:
            yield from self._start()
            return
        failures.reset()
        it = self._start()
        done = False
        try:
            for batch in it:
                failures.raise_first()
                yield batch
            done = True
        except DataError:
            raise
        except Exception:
            failures.raise_first()  # a worker's failure that surfaced as "Blocking queue is killed"
            raise
        finally:
            if not done and hasattr(it, "_try_shutdown_all"):
                it._try_shutdown_all()  # stop the reader thread / workers now, not at garbage collection

    def _gathered(self):
        """In-memory rows without augmentation: each batch gathered with one fancy index and normalised at once
        in this thread (:meth:`ArrayDataset.get_batch`; the same tensors as the collated per-sample path). The
        per-sample path costs ~50 us a sample in Python, a third of a small network's epoch on CPU."""
        for indices in self.batch_sampler:
            yield [paddle.to_tensor(a) for a in self.dataset.get_batch(indices)]

    def __call__(self):
        return self.__iter__()


def build_loader(dataset: paddle.io.Dataset, *, batch_size: int, shuffle: bool, seed: int,
                 drop_last: bool = False, num_workers: int = 0,
                 batch_sampler: EpochBatchSampler | None = None, num_replicas: int = 1,
                 rank: int = 0) -> paddle.io.DataLoader:
    """A :class:`CheckedDataLoader` yielding ``(x [B, ...] float32, y [B] int64, idx [B] int64)`` tensors; a
    sample that fails to load ends the iteration with one :class:`DataError` naming it.

    The order depends only on ``(seed, epoch)``: call ``loader.batch_sampler.set_epoch(epoch)`` at the
    start of every epoch (workers are re-created per epoch, so they see the dataset's epoch too).
    ``batch_sampler`` replaces the default sampler (then ``batch_size``, ``shuffle``, ``seed`` and
    ``drop_last`` are the sampler's own), e.g. ``imbalance.WeightedEpochBatchSampler``.
    ``num_replicas`` / ``rank``: data-parallel sharding of the global batches (see :class:`EpochBatchSampler`;
    also applied to a given ``batch_sampler``).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise DataError(f"num_workers must be an int >= 0, got {num_workers!r}")
    sampler = batch_sampler if batch_sampler is not None else EpochBatchSampler(
        dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    if num_replicas != 1 or rank != 0:
        sampler.set_replicas(num_replicas=num_replicas, rank=rank)
    return CheckedDataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, return_list=True,
                             persistent_workers=False)
