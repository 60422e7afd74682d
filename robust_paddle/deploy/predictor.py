"""Loading an exported model folder: ``inference.yml`` metadata, Paddle Inference and onnxruntime predictors,
and the image preprocessing that reproduces training.

A folder written by ``robust-paddle export`` holds ``inference.pdmodel`` / ``inference.pdiparams`` (Paddle 3.x:
``inference.json``), ``inference.yml`` (what :class:`ModelInfo` reads), optionally ``inference.onnx`` and a
PaddleServing package. The server (``robust_paddle.deploy.serve``), the export parity checks and the inference
benchmark all load models through this module, so they agree on preprocessing and predictor settings.

Image preprocessing (``preprocess_images``), the same steps as training: the one decoder
(``robust_paddle.data.decode.decode_image``: every Pillow mode to the model's channels in [0, 1], 16-bit by
1/65535, alpha over white) and the evaluation geometry of training (``robust_paddle.data.transforms.load_image``:
resized to the model's height x width with bilinear filtering, or, with ``preprocess.resize_short`` in
``inference.yml`` (``data.eval_resize_short``), the short side resized and the centre crop taken)
-> ``(x - mean) / std`` per channel -> CHW float32. For the ``digits`` dataset, whose training values are
``k / 16`` for k in 0..16, a PNG written as ``round(255 * value)`` decodes to within 1/510 of the training value.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import yaml

from robust_paddle import _compat
from robust_paddle.errors import DataError, MissingDependencyError
from robust_paddle.ops import atomic_write

logger = logging.getLogger(__name__)

INFO_FILE = "inference.yml"
MODEL_PREFIX = "inference"
INFO_FORMAT = "robust_paddle.inference/1"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What ``inference.yml`` says about an exported model.

    Attributes:
        model_dir: folder holding the files.
        input_name: feed name of the program; input_shape: one sample, e.g. ``(1, 8, 8)``; the batch
            dimension is dynamic. kind: ``"image"`` (CHW input), ``"tabular"`` (``[D]`` input) or ``"text"``
            (``[L]`` int64 token ids).
        output_name: fetch name; softmax: whether the model outputs probabilities (else logits).
        mean, std: per channel (per feature for tabular), applied after scaling pixels to [0, 1].
        class_names: one per output column. model_version: hash of the exported weights and interface.
        source: where the model came from (checkpoint, epoch, network, EMA).
        text: text models: the tokenizer file (``tokenizer.json`` in ``model_dir``) and the long-text rule
            (``max_length``, ``truncation``, ``head_tokens``, the windows inside the program); else None.
        resize_short: the evaluation geometry (``data.eval_resize_short``; 0: resize straight to the input size).
    """

    model_dir: str
    input_name: str
    input_shape: tuple[int, ...]
    kind: str
    output_name: str
    softmax: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    model_version: str
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    text: dict[str, Any] | None = None
    resize_short: int = 0  # data.eval_resize_short: short side before the centre crop; 0 = plain resize

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_dtype(self) -> str:
        """``int64`` (token ids) for text models, else ``float32``."""
        return "int64" if self.kind == "text" else "float32"

    def tokenizer(self) -> Any:
        """The saved :class:`~robust_paddle.data.tokenize.TextTokenizer` of a text model."""
        from robust_paddle.data.tokenize import TextTokenizer

        if self.text is None:
            raise DataError(f"{self.model_dir}: this model reads {self.kind} inputs, not texts")
        return TextTokenizer.load(os.path.join(self.model_dir, self.text["tokenizer"]))

    @property
    def prefix(self) -> str:
        return os.path.join(self.model_dir, MODEL_PREFIX)

    @property
    def model_file(self) -> str:
        return _compat.model_file(self.prefix)

    @property
    def params_file(self) -> str:
        return _compat.params_file(self.prefix)

    def to_yaml_dict(self) -> dict[str, Any]:
        """The ``inference.yml`` content (paths relative to the folder)."""
        image = self.kind == "image"
        return {
            "format": INFO_FORMAT,
            "model_version": self.model_version,
            "model_file": os.path.basename(self.model_file),
            "params_file": os.path.basename(self.params_file),
            "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": self.input_dtype,
                      "kind": self.kind, "batch": "dynamic"},
            "output": {"name": self.output_name, "dtype": "float32", "shape": [self.num_classes],
                       "softmax": self.softmax, "kind": "probabilities" if self.softmax else "logits"},
            "preprocess": {
                "channels": int(self.input_shape[0]) if image else None,
                "size": [int(self.input_shape[1]), int(self.input_shape[2])] if image else None,
                "resize": "bilinear" if image else None,
                "resize_short": int(self.resize_short) if image and self.resize_short else None,
                "crop": "center" if image and self.resize_short else None,
                "pixel_scale": {"8bit": 1 / 255, "16bit": 1 / 65535} if image else None,
                "mean": list(self.mean), "std": list(self.std),
                "layout": "CHW" if image else ("L" if self.kind == "text" else "D"),
                **({"text": dict(self.text)} if self.text is not None else {}),
            },
            "class_names": list(self.class_names),
            "num_classes": self.num_classes,
            "source": self.source,
            "versions": {"robust_paddle": _package_version(), "paddle": _paddle_version()},
        }

    def save(self) -> str:
        path = os.path.join(self.model_dir, INFO_FILE)
        with atomic_write(path) as fh:
            yaml.safe_dump(self.to_yaml_dict(), fh, sort_keys=False)
        return path


def _package_version() -> str:
    from robust_paddle import __version__

    return __version__


def _paddle_version() -> str:
    import paddle

    return paddle.__version__


def load_model_info(model_dir: str) -> ModelInfo:
    """Read and check ``model_dir/inference.yml``.

    Raises:
        FileNotFoundError: the folder, ``inference.yml`` or the model files are missing.
        ValueError: the file is not an export's metadata (names the missing or wrong field).
    """
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model folder not found: {model_dir} (pass the --out folder of robust-paddle export)")
    path = os.path.join(model_dir, INFO_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir} has no {INFO_FILE}; pass a folder written by `robust-paddle export`")
    from robust_paddle.data.textfile import read_text

    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict) or data.get("format") != INFO_FORMAT:
        raise DataError(f"{path}: 'format' must be {INFO_FORMAT!r}; this is not robust_paddle export metadata")
    try:
        inp, out, pre = data["input"], data["output"], data["preprocess"]
        info = ModelInfo(model_dir=model_dir, input_name=str(inp["name"]),
                         input_shape=tuple(int(v) for v in inp["shape"]), kind=str(inp["kind"]),
                         output_name=str(out["name"]), softmax=bool(out["softmax"]),
                         mean=tuple(float(v) for v in pre["mean"]), std=tuple(float(v) for v in pre["std"]),
                         class_names=tuple(str(c) for c in data["class_names"]),
                         model_version=str(data["model_version"]), source=dict(data.get("source") or {}),
                         text=dict(pre["text"]) if pre.get("text") is not None else None,
                         resize_short=int(pre.get("resize_short") or 0))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: missing or malformed field ({type(e).__name__}: {e})") from None
    if info.kind not in ("image", "tabular", "text"):
        raise DataError(f"{path}: input.kind must be 'image', 'tabular' or 'text', got {info.kind!r}")
    if (info.kind == "text") != (info.text is not None) or (info.text is not None and "tokenizer" not in info.text):
        raise DataError(f"{path}: a text model needs preprocess.text with its tokenizer file (and only a text model)")
    for f in (info.model_file, info.params_file):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"{model_dir}: model file {os.path.basename(f)} is missing")
    return info


# ------------------------------------------------------------------------------------------- predictors
class PaddlePredictor:
    """A Paddle Inference predictor for one exported model (CPU).

    Not thread-safe: call it from one thread at a time (the server funnels requests through one batching
    thread). Input ``[N, *input_shape]`` float32 (``input_dtype="int64"``: token ids) with any N >= 1, output
    ``[N, C]`` float32.

    Args:
        prefix: model path without extension (``<dir>/inference``).
        int8: the program holds quantize/dequantize ops (PaddleSlim QAT / PTQ output); with ``optimized``
            it runs oneDNN int8 kernels (``enable_mkldnn_int8``).
        threads: CPU math-library threads.
        int8_ops: with ``int8``, the op types oneDNN runs in int8 (e.g. ``("conv2d",)``); None lets Paddle
            quantise every op type it can (conv2d, fc, pool2d, ...). Keeping small ops in fp32 saves their
            quantise/dequantise reorders at batch 1 on CPUs without VNNI.
        optimized: True runs Paddle's IR fusion passes and oneDNN (the deployment setting); False runs the
            saved program op by op with the same kernels as dygraph (used to check the program exactly;
            fake-quant ops then run in fp32).

    Raises:
        ValueError: the program file is damaged (checked in Python first: Paddle's loader would crash).
    """

    def __init__(self, prefix: str, *, int8: bool = False, threads: int = 1, optimized: bool = True,
                 int8_ops: tuple[str, ...] | list[str] | None = None, input_dtype: str = "float32") -> None:
        import paddle
        from paddle import inference

        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise DataError(f"threads must be an int >= 1, got {threads!r}")
        if int8_ops is not None and (isinstance(int8_ops, str) or not int8_ops
                                     or not all(isinstance(o, str) and o for o in int8_ops)):
            raise DataError(f"int8_ops must be a non-empty list of op type names such as ['conv2d', 'fc'], "
                             f"got {int8_ops!r}")
        _compat.check_program_file(_compat.model_file(prefix))  # Paddle's loader segfaults on a damaged one
        config = inference.Config(_compat.model_file(prefix), _compat.params_file(prefix))
        config.disable_gpu()
        config.disable_glog_info()
        config.set_cpu_math_library_num_threads(threads)
        config.switch_ir_optim(optimized)
        self.int8_kernels = False
        if optimized and paddle.base.core.is_compiled_with_mkldnn():
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(16)  # bounds oneDNN's per-shape kernel cache (dynamic batch)
            if int8:
                config.enable_mkldnn_int8(set(int8_ops)) if int8_ops else config.enable_mkldnn_int8()
                self.int8_kernels = True
        else:
            config.disable_mkldnn()
        if int8 and optimized and not self.int8_kernels:
            logger.warning("this Paddle build has no oneDNN: the int8 model runs with dequantised fp32 weights")
        self.input_dtype = np.dtype(input_dtype)
        self._predictor = inference.create_predictor(config)
        self.input_name = self._predictor.get_input_names()[0]
        self.output_name = self._predictor.get_output_names()[0]
        self._input = self._predictor.get_input_handle(self.input_name)
        self._output = self._predictor.get_output_handle(self.output_name)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        self._input.reshape(list(x.shape))
        self._input.copy_from_cpu(x)
        self._predictor.run()
        return self._output.copy_to_cpu()

    def predict(self, x: np.ndarray, *, batch_size: int) -> np.ndarray:
        """Outputs ``[N, C]`` of ``x`` ``[N, ...]`` in batches of ``batch_size``."""
        return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


class OnnxPredictor:
    """onnxruntime session on CPU for ``model.onnx``; input ``[N, *input_shape]`` float32, output ``[N, C]``."""

    def __init__(self, path: str, *, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingDependencyError("ONNX inference needs onnxruntime: pip install -e .[export]") from e
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self._session.get_inputs()[0].name
        self.input_shape = list(self._session.get_inputs()[0].shape)
        self.input_dtype = np.dtype(np.int64 if self._session.get_inputs()[0].type == "tensor(int64)" else np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)})[0]




# ---------------------------------------------------------------------------------------- preprocessing
def decode_image(data: bytes, *, channels: int, size: tuple[int, int], name: str = "image",
                 resize_short: int = 0) -> np.ndarray:
    """Decode PNG/JPEG (any format Pillow reads) bytes into HWC float32 in [0, 1] by the one decoder that
    training uses (:func:`robust_paddle.data.decode.decode_image`).

    Args:
        data: the encoded image.
        channels: 1 or 3.
        size: ``(height, width)``; resized with bilinear filtering when the image differs.
        name: how an error names the image.
        resize_short: 0, or the short side to resize to before the centre ``size`` crop (training's
            ``data.eval_resize_short``).

    Returns:
        [height, width, channels] float32.

    Raises:
        DataError (a ValueError): ``"<name>: cannot read image: <reason>"``.
    """
    from robust_paddle.data.transforms import load_image

    return load_image(data, channels=channels, size=size, resize_short=resize_short, name=name)


def normalize(images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """``[N, H, W, C]`` values in [0, 1] -> ``[N, C, H, W]`` float32 normalised with the training mean/std."""
    mean = np.asarray(info.mean, dtype=np.float32)
    std = np.asarray(info.std, dtype=np.float32)
    x = (np.asarray(images, dtype=np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


class PixelBudgetError(DataError):
    """The images of one request would decode to more pixels than allowed (the server answers 413)."""


def check_pixel_budget(blobs: Sequence[bytes], max_pixels: int) -> int:
    """Sum of the images' pixel counts from their headers; raises before anything is decoded.

    Raises:
        PixelBudgetError: the sum exceeds ``max_pixels`` (the message gives both numbers).
        DataError: an image cannot be identified or exceeds Pillow's bomb limit (names its position).
    """
    from robust_paddle.data.decode import probe_image

    total = 0
    for i, blob in enumerate(blobs):
        head = probe_image(blob, name=f"images[{i}]")  # header only; Pillow's bomb guard applies
        total += head.width * head.height
    if total > max_pixels:
        raise PixelBudgetError(f"the images of this request hold {total / 1e6:.1f} megapixels; at most "
                               f"{max_pixels / 1e6:g} megapixels per request (--max-megapixels)")
    return total


def preprocess_images(blobs: Sequence[bytes], info: ModelInfo, *, max_pixels: int | None = None) -> np.ndarray:
    """Encoded images -> the model input ``[N, *input_shape]`` float32 (see the module docstring).

    Args:
        blobs: encoded images.
        info: the exported model's metadata.
        max_pixels: decoded-pixel budget of all images together (None: no budget), checked on the headers
            before any image is decoded.

    Raises:
        PixelBudgetError: over ``max_pixels``.
        ValueError: the model is tabular, or an image cannot be decoded (names its position).
    """
    if info.kind != "image":
        raise DataError(f"this model takes tabular inputs of shape {list(info.input_shape)}, not images; "
                         "send them as 'inputs'")
    if max_pixels is not None:
        check_pixel_budget(blobs, max_pixels)
    c, h, w = info.input_shape
    out = []
    for i, blob in enumerate(blobs):
        out.append(decode_image(blob, channels=c, size=(h, w), name=f"images[{i}]", resize_short=info.resize_short))
    return normalize(np.stack(out), info)
