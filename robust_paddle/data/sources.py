"""Dataset sources registered in ``DATASETS``: each reads ``DataConfig`` and returns a :class:`Source`.

A source only reads files into arrays (or image paths) and labels; splitting, noise, resizing and
normalisation happen in ``build.py`` so every source behaves the same.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable

import numpy as np

from robust_paddle.data.labels import check_finite, read_class_names, resolve_classes
from robust_paddle.data.textfile import read_text_lines, where
from robust_paddle.errors import DataError
from robust_paddle.registry import DATASETS

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
    "worm").split()
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclasses.dataclass
class Split:
    """Stored samples of one split: [N, H, W, C] / [N, D] array or N image paths, observed labels [N] and,
    when the source has an id column, the user's ids [N] (int or str). Row ``i`` is the sample's
    ``source_row`` in every output."""

    data: np.ndarray | list[str]
    labels: np.ndarray
    clean_labels: np.ndarray | None = None
    ids: np.ndarray | None = None
    origin: str = ""  # the file it was read from (for messages)
    lines: np.ndarray | None = None  # [N] line numbers in ``origin`` (text sources)
    rows: np.ndarray | None = None  # [N] source rows when samples were left out (on_bad_sample: skip); None: 0..N-1


@dataclasses.dataclass
class Source:
    """What a source read. ``kind``: ``image`` or ``tabular``; ``scale`` maps stored array values to [0, 1]-ish
    units (1/255 for uint8; 1 for image paths, which the decoder maps to [0, 1]); ``mean``/``std``: the dataset's standard statistics (None: computed on train);
    ``val_trusted``: the validation labels are clean (``data.clean_val_path``)."""

    name: str
    kind: str
    train: Split
    class_names: list[str]
    val: Split | None = None
    test: Split | None = None
    val_trusted: bool = False
    scale: float = 1.0
    mean: list[float] | None = None
    std: list[float] | None = None


# ----------------------------------------------------------------------------------------------- helpers
def _reject(cfg, name: str, fields: tuple[str, ...]) -> None:
    for f in fields:
        if getattr(cfg, f):
            raise DataError(f"data.{f}={getattr(cfg, f)!r} is not used by dataset '{name}'; leave it empty")


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise DataError(f"{where}: labels must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def _class_names(cfg, splits: list[Split | None], known: list[str] | None = None) -> list[str]:
    """``data.class_names`` if given, else ``known``, else "0".."C-1" with C = max label + 1, after the label
    checks of :func:`robust_paddle.data.labels.resolve_classes` (``splits``: train, val, test)."""
    parts = dict(zip(("train", "val", "test"), splits))
    names = cfg.class_names
    if isinstance(names, str):
        names = read_class_names(names)
    return resolve_classes(parts, names=None if names is None else list(names), known=known,
                           max_classes=cfg.max_classes)


def _extra_splits(cfg, read: Callable[[str], Split]) -> dict:
    """Val (``val_path`` or trusted ``clean_val_path``) and test (``test_path``) read with ``read``."""
    if cfg.val_path and cfg.clean_val_path:
        raise DataError("set only one of data.val_path and data.clean_val_path (the latter is a trusted val set)")
    out: dict = {"val_trusted": bool(cfg.clean_val_path)}
    if cfg.val_path or cfg.clean_val_path:
        out["val"] = read(cfg.clean_val_path or cfg.val_path)
        if cfg.clean_val_path:
            out["val"].clean_labels = out["val"].labels
    if cfg.test_path:
        out["test"] = read(cfg.test_path)
    return out


def _need_file(path: str, field: str, what: str) -> str:
    if not path:
        raise DataError(f"data.{field} is empty; set it to {what}")
    if not os.path.exists(path):
        raise DataError(f"data.{field}: {path!r} does not exist ({what})")
    return path


# ------------------------------------------------------------------------------------------------ digits
@DATASETS.register("digits")
def digits(cfg) -> Source:
    """scikit-learn's 8x8 handwritten digits (1,797 samples, embedded: no files). Values 0..16 -> [0, 1]."""
    from sklearn.datasets import load_digits

    _reject(cfg, "digits", ("path", "val_path", "test_path", "clean_val_path"))
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    train = Split(x, y, y.copy(), origin="sklearn digits")
    return Source("digits", "image", train, _class_names(cfg, [train], known=[str(i) for i in range(10)]))


# --------------------------------------------------------------------------------------------------- npz
def _npz_images(x: np.ndarray, where: str) -> tuple[np.ndarray, str]:
    if x.ndim == 2:
        return x, "tabular"
    if x.ndim == 3:
        return x[..., None], "image"
    if x.ndim == 4:
        if x.shape[3] in (1, 3):
            return x, "image"
        if x.shape[1] in (1, 3):
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), "image"
    raise DataError(f"{where}: x must be [N, D] (tabular), [N, H, W] (grey) or [N, H, W, C] / [N, C, H, W] "
                     f"with C in (1, 3); got shape {x.shape}")


def _read_npz_arrays(path: str, where: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{where}: cannot read {path!r} as .npz: {e}") from None


def _npz_ids(z: dict, key: str, where: str) -> np.ndarray | None:
    """The optional id column ``key``: 1-D integers or strings (carried to label_issues.csv as ``id``)."""
    if key not in z:
        return None
    ids = np.asarray(z[key])
    if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.dtype.kind in "US"):
        raise DataError(f"{where} '{key}': ids must be a 1-D array of integers or strings, got shape "
                         f"{ids.shape} dtype {ids.dtype}")
    return ids.astype(str) if ids.dtype.kind == "S" else ids


def _npz_split(z: dict, xk: str, yk: str, ck: str | None, where: str, ik: str = "ids") -> tuple[Split, str, np.dtype]:
    if xk not in z or yk not in z:
        raise DataError(f"{where}: needs arrays '{xk}' and '{yk}'; found {', '.join(sorted(z)) or 'none'}")
    x, kind = _npz_images(z[xk], where)
    y = _labels(z[yk], f"{where} '{yk}'")
    clean = _labels(z[ck], f"{where} '{ck}'") if ck and ck in z else None
    ids = _npz_ids(z, ik, where)
    for name, arr in ((yk, y), (ck, clean), (ik, ids)):
        if arr is not None and arr.shape[0] != x.shape[0]:
            raise DataError(f"{where}: '{xk}' has {x.shape[0]} rows but '{name}' has {arr.shape[0]}")
    split = Split(x, y, clean, ids, origin=f"{where} '{xk}'")
    check_finite(x, split, "the sample")
    return split, kind, x.dtype


@DATASETS.register("npz")
def npz(cfg) -> Source:
    """``.npz`` with ``x``, ``y`` and optional ``y_clean``, ``ids`` (the user's sample ids, 1-D int or str:
    carried to every per-sample output), ``x_test``/``y_test``/``ids_test``, ``class_names``.

    ``x``: [N, D] tabular, [N, H, W] grey, or [N, H, W, C] / [N, C, H, W] images (uint8 scaled by 1/255,
    uint16 by 1/65535 as the image decoder does for 16-bit files, floats used as they are). ``val_path`` / ``test_path`` / ``clean_val_path`` are further npz files.
    """
    path = _need_file(cfg.path, "path", "a .npz file with arrays x, y")
    z = _read_npz_arrays(path, f"data.path {path}")
    train, kind, dtype = _npz_split(z, "x", "y", "y_clean", f"data.path {path}")
    test = None
    if "x_test" in z:
        test, _, _ = _npz_split(z, "x_test", "y_test", "y_test_clean", f"data.path {path}", "ids_test")

    def read(p: str) -> Split:
        split, k, _ = _npz_split(_read_npz_arrays(_need_file(p, "val_path/test_path", "an .npz file"), p),
                                 "x", "y", "y_clean", p)
        if k != kind or split.data.shape[1:] != train.data.shape[1:]:
            raise DataError(f"{p}: samples of shape {split.data.shape[1:]} do not match the training "
                             f"data {train.data.shape[1:]}")
        return split

    extra = _extra_splits(cfg, read)
    if test is not None and "test" in extra:
        raise DataError(f"data.path {path} already holds x_test; leave data.test_path empty")
    extra.setdefault("test", test)
    known = [str(s) for s in z["class_names"].tolist()] if "class_names" in z else None
    names = _class_names(cfg, [train, extra.get("val"), extra.get("test")], known=known)
    scale = {np.dtype(np.uint8): 1.0 / 255.0, np.dtype(np.uint16): 1.0 / 65535.0}.get(np.dtype(dtype), 1.0) \
        if kind == "image" else 1.0
    return Source("npz", kind, train, names, scale=scale, **extra)


# ------------------------------------------------------------------------------------------- npy folder
def _load_npy(path: str, *, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path!r} as .npy: {e}") from None


def _npy_split(folder: str, prefix: str, where: str) -> Split | None:
    xp, yp = os.path.join(folder, f"x{prefix}.npy"), os.path.join(folder, f"y{prefix}.npy")
    if not os.path.isfile(xp):
        return None
    if not os.path.isfile(yp):
        raise DataError(f"{where}: {xp} has no labels file {os.path.basename(yp)} next to it")
    x = _load_npy(xp, mmap=True)
    if x.ndim not in (2, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
        raise DataError(f"{xp}: memory-mapped images must be [N, H, W, C] with C in (1, 3) (or [N, D] tabular), "
                         f"got shape {x.shape}")
    y = _labels(_load_npy(yp, mmap=False), yp)
    cp = os.path.join(folder, f"y{prefix}_clean.npy")
    clean = _labels(_load_npy(cp, mmap=False), cp) if os.path.isfile(cp) else None
    for name, arr in ((yp, y), (cp, clean)):
        if arr is not None and arr.shape[0] != x.shape[0]:
            raise DataError(f"{xp} has {x.shape[0]} rows but {name} has {arr.shape[0]}")
    return Split(x, y, clean)


@DATASETS.register("npy")
def npy(cfg) -> Source:
    """A folder (``data.path``) of ``.npy`` files read as memory maps: ``x.npy`` [N, H, W, C] (uint8 scaled
    by 1/255) or [N, D], ``y.npy`` [N], optional ``y_clean.npy``, ``x_test.npy``/``y_test.npy``,
    ``x_val.npy``/``y_val.npy``. Samples are read row by row while training, so the images never have to
    fit in memory (store them at the training size: a resize or channel change would load them)."""
    _reject(cfg, "npy", ("val_path", "test_path", "clean_val_path"))
    folder = _need_file(cfg.path, "path", "a folder holding x.npy and y.npy")
    train = _npy_split(folder, "", f"data.path {folder}")
    if train is None:
        raise DataError(f"data.path {folder!r}: no x.npy in the folder (expected x.npy and y.npy)")
    extra = {part: _npy_split(folder, f"_{part}", f"data.path {folder}") for part in ("val", "test")}
    for part, split in extra.items():
        if split is not None and split.data.shape[1:] != train.data.shape[1:]:
            raise DataError(f"{folder}: x_{part}.npy samples of shape {split.data.shape[1:]} do not match "
                             f"x.npy {train.data.shape[1:]}")
    names = _class_names(cfg, [train, *extra.values()])
    kind = "tabular" if train.data.ndim == 2 else "image"
    scale = 1.0 / 255.0 if train.data.dtype == np.uint8 and kind == "image" else 1.0
    return Source("npy", kind, train, names, scale=scale, **extra)


# -------------------------------------------------------------------------------------------- file lists
def read_file_list(list_path: str, root: str) -> Split:
    """PaddleClas-style list: one ``relative/path.jpg label`` per line (the path may contain spaces)."""
    _need_file(list_path, "path", "a file list with lines 'relative/path.jpg label'")
    paths, labels, lines = [], [], []
    for i, line in read_text_lines(list_path, what="file list"):
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{where(list_path, i)}: {line.strip()!r} must be 'relative/path label'")
        try:
            labels.append(int(parts[1]))
        except ValueError:
            raise DataError(f"{where(list_path, i)}: label {parts[1]!r} is not an integer") from None
        paths.append(os.path.join(root, parts[0]))
        lines.append(i)
    if not paths:
        raise DataError(f"{list_path}: the file list is empty")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{list_path}: {len(missing)} image(s) not found under data.root={root!r}, e.g. "
                         f"{', '.join(missing[:3])}")
    return Split(paths, _labels(np.asarray(labels, dtype=np.int64), list_path), origin=list_path,
                 lines=np.asarray(lines, dtype=np.int64))


@DATASETS.register("file_list")
def file_list(cfg) -> Source:
    """PaddleClas file lists: ``data.path`` (train), ``val_path``/``test_path``; images under ``data.root``
    (default: the list's folder)."""
    root = cfg.root or os.path.dirname(os.path.abspath(cfg.path or "."))
    train = read_file_list(cfg.path, root)
    extra = _extra_splits(cfg, lambda p: read_file_list(p, root))
    names = _class_names(cfg, [train, extra.get("val"), extra.get("test")])
    return Source("file_list", "image", train, names, scale=1.0, **extra)


def _scan_folder(folder: str, field: str) -> dict[str, list[str]]:
    _need_file(folder, field, "a folder with one sub-folder of images per class")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    out = {}
    for c in classes:
        files = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, c)):
            dirnames.sort()
            files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
        out[c] = files
    if not classes or not any(out.values()):
        raise DataError(f"data.{field}: {folder!r} holds no class sub-folders with images "
                         f"({', '.join(IMAGE_EXTENSIONS)})")
    return out


@DATASETS.register("image_folder")
def image_folder(cfg) -> Source:
    """One sub-folder per class (sorted folder names are the class names), ``data.path`` or ``data.root``;
    ``val_path``/``test_path`` folders use the same class names (a subset is allowed)."""
    field = "path" if cfg.path else "root"
    scanned = _scan_folder(cfg.path or cfg.root, field)
    classes = list(scanned)
    index = {c: i for i, c in enumerate(classes)}

    def to_split(tree: dict[str, list[str]], where: str) -> Split:
        unknown = sorted(set(tree) - set(index))
        if unknown:
            raise DataError(f"{where}: class folder(s) {', '.join(unknown)} are not among the training "
                             f"classes {', '.join(classes)}")
        paths = [p for c in tree for p in tree[c]]
        return Split(paths, np.asarray([index[c] for c in tree for _ in tree[c]], dtype=np.int64), origin=where)

    train = to_split(scanned, f"data.{field}")
    extra = _extra_splits(cfg, lambda p: to_split(_scan_folder(p, "val_path/test_path"), p))
    names = _class_names(cfg, [train, extra.get("val"), extra.get("test")], known=classes)
    return Source("image_folder", "image", train, names, scale=1.0, **extra)


# ------------------------------------------------------------------------------------- paddle.vision sets
def _vision_split(ds) -> Split:
    """Read a paddle.vision dataset (backend='cv2': HWC float arrays) into uint8 [N, H, W, C]."""
    n = len(ds)
    first = np.asarray(ds[0][0]) if n else np.zeros((0, 0))
    x = np.empty((n,) + first.shape[:2] + (first.shape[2] if first.ndim == 3 else 1,), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    for i in range(n):  # filled in place: a float32 copy of CIFAR would take 600 MB
        img, label = ds[i]
        x[i] = np.asarray(img).reshape(x.shape[1:])
        y[i] = int(np.asarray(label).reshape(-1)[0])
    return Split(x, y, y.copy())


def _missing_files(name: str, files: list[str]) -> DataError:
    return DataError(f"dataset '{name}': file(s) not found: {', '.join(files)}. Put them there (see "
                      "data.root / data.path), or set data.download=true to let paddle.vision download them "
                      "(needs internet)")


def _mnist_like(cfg, name: str, cls_name: str, names: list[str], mean: float, std: float) -> Source:
    import paddle.vision.datasets as vds

    _reject(cfg, name, ("path", "val_path", "test_path", "clean_val_path"))
    files = {mode: [os.path.join(cfg.root, f) for f in pair] for mode, pair in MNIST_FILES.items()}
    missing = [p for pair in files.values() for p in pair if not os.path.isfile(p)]
    if missing and not cfg.download:
        raise _missing_files(name, missing)
    splits = {}
    for mode, paths in files.items():
        if not all(os.path.isfile(p) for p in paths):
            paths = [None, None]  # paddle.vision downloads into ~/.cache/paddle/dataset
        ds = getattr(vds, cls_name)(image_path=paths[0], label_path=paths[1], mode=mode,
                                    download=cfg.download, backend="cv2")
        splits[mode] = _vision_split(ds)
    names = _class_names(cfg, [splits["train"], None, splits["test"]], known=names)
    return Source(name, "image", splits["train"], names, test=splits["test"], scale=1.0 / 255.0,
                  mean=[mean], std=[std])


@DATASETS.register("mnist")
def mnist(cfg) -> Source:
    """MNIST from the four idx ``.gz`` files under ``data.root`` (paddle.vision reader)."""
    return _mnist_like(cfg, "mnist", "MNIST", [str(i) for i in range(10)], 0.1307, 0.3081)


@DATASETS.register("fashion_mnist")
def fashion_mnist(cfg) -> Source:
    """Fashion-MNIST from the four idx ``.gz`` files under ``data.root`` (same names as MNIST)."""
    return _mnist_like(cfg, "fashion_mnist", "FashionMNIST", FASHION_MNIST_CLASSES, 0.2860, 0.3530)


def _cifar(cfg, name: str, archive: str, names: list[str], mean: list[float], std: list[float]) -> Source:
    from robust_paddle.data.cifar import download, read_cifar

    _reject(cfg, name, ("val_path", "test_path", "clean_val_path"))
    path = cfg.path or (os.path.join(cfg.root, archive) if cfg.root else archive)
    if not os.path.isfile(path):
        if not cfg.download:
            raise _missing_files(name, [path])
        path = download(name)
    splits = {}
    for mode in ("train", "test"):  # read weights-only: the archive's pickles never run code
        x, y = read_cifar(path, name, mode)
        splits[mode] = Split(x, y, y.copy())
    names = _class_names(cfg, [splits["train"], None, splits["test"]], known=names)
    return Source(name, "image", splits["train"], names, test=splits["test"], scale=1.0 / 255.0,
                  mean=mean, std=std)


@DATASETS.register("cifar10")
def cifar10(cfg) -> Source:
    """CIFAR-10 from ``cifar-10-python.tar.gz`` (``data.path``, or under ``data.root``)."""
    return _cifar(cfg, "cifar10", "cifar-10-python.tar.gz", CIFAR10_CLASSES,
                  [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])


@DATASETS.register("cifar100")
def cifar100(cfg) -> Source:
    """CIFAR-100 (fine labels) from ``cifar-100-python.tar.gz`` (``data.path``, or under ``data.root``)."""
    return _cifar(cfg, "cifar100", "cifar-100-python.tar.gz", CIFAR100_CLASSES,
                  [0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762])
