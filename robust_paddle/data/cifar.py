"""CIFAR-10/100 ``*-python.tar.gz`` archives read without running code.

The archives hold Python pickles (one per batch); ``paddle.vision.datasets.Cifar10`` reads them with
``pickle.load``, so a crafted archive runs whatever it names. This reader unpickles each member through
:mod:`robust_paddle.data.safe_pickle` (arrays, lists and dicts only) and checks the arrays it gets.
"""

from __future__ import annotations

import tarfile

import numpy as np

from robust_paddle.data import safe_pickle
from robust_paddle.errors import DataError

#: (dataset, mode) -> substring of the member names holding that split (as paddle.vision's reader)
MEMBER_FLAGS = {("cifar10", "train"): "data_batch", ("cifar10", "test"): "test_batch",
                ("cifar100", "train"): "train", ("cifar100", "test"): "test"}
#: paddle.vision's download locations (used only with data.download=true)
URLS = {"cifar10": ("https://dataset.bj.bcebos.com/cifar/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        "cifar100": ("https://dataset.bj.bcebos.com/cifar/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")}


def download(name: str) -> str:
    """Fetch the archive into paddle's dataset cache (``~/.cache/paddle/dataset/cifar``); returns its path."""
    from paddle.vision.datasets import cifar as vision_cifar

    url, md5 = URLS[name]
    return vision_cifar._check_exists_and_download(None, url, md5, "cifar", True)


def read_cifar(path: str, name: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 32, 32, 3)`` uint8 (HWC) and labels ``(N,)`` int64 of one split of a CIFAR archive.

    Members are read in sorted name order (as paddle.vision does); CIFAR-100 gives the fine labels.

    Raises:
        DataError: the archive cannot be opened, a member is not a CIFAR batch, or it references anything
            but arrays and containers (names ``archive:member``).
    """
    flag = MEMBER_FLAGS[(name, mode)]
    xs, ys = [], []
    try:
        with tarfile.open(path, mode="r") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and flag in m.name), key=lambda m: m.name)
            if not members:
                raise DataError(f"{path}: no '{flag}' member; is this the {name} python archive?")
            for m in members:
                where = f"{path}:{m.name}"
                fh = tar.extractfile(m)
                try:
                    batch = safe_pickle.safe_loads(fh.read() if fh else b"", source=where, encoding="bytes")
                except ValueError as e:
                    raise DataError(str(e)) from None
                x, y = _batch_arrays(batch, where)
                xs.append(x)
                ys.append(y)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path} cannot be read as a tar archive ({type(e).__name__}: {e})") from None
    return np.concatenate(xs), np.concatenate(ys)


def _batch_arrays(batch: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict) or b"data" not in batch:
        raise DataError(f"{where}: not a CIFAR batch (expected a dict with b'data' and b'labels'/b'fine_labels')")
    labels = batch.get(b"labels", batch.get(b"fine_labels"))
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
        raise DataError(f"{where}: not a CIFAR batch (b'data' must be an (N, 3072) array with labels)")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(data):
        raise DataError(f"{where}: {len(data)} images but {len(y)} labels")
    x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y
