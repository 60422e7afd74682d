"""INT8 quantisation with PaddleSlim: quantisation-aware training (dygraph) and post-training static quantisation.

Both write ONNX-format quantised programs (``quantize_linear`` / ``dequantize_linear`` ops, weights stored as
int8 with per-channel scales), which Paddle Inference on the CPU runs with oneDNN int8 kernels
(``Config.enable_mkldnn_int8``).

PTQ calibration: on Paddle 2.6, ``PostTrainingQuantization`` only accepts a ``paddle.io.DataLoader`` (it
asserts ``isinstance(data_loader, paddle.io.DataLoader)``; generators are no longer wrapped), and the loader
must yield feed dicts. :func:`calibration_loader` builds one in static mode over an in-memory array with
``feed_list=[x]`` and ``return_list=False``, which yields ``[{"x": tensor}]`` per batch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import paddle

from robust_paddle import _compat
from robust_paddle.compress.backend import import_paddleslim
from robust_paddle.compress.spec import PTQStage, QATStage
from robust_paddle.errors import ConfigError

logger = logging.getLogger(__name__)

#: observer layers that learn activation ranges (updated only in training mode)
OBSERVERS = ("FakeQuantMovingAverageAbsMax", "MovingAverageAbsMaxScale")


# ------------------------------------------------------------------------------------------------------ QAT
def build_qat(stage: QATStage) -> Any:
    """A ``paddleslim.QAT`` quanter for ``Conv2D`` and ``Linear`` layers (8-bit, ONNX format)."""
    slim = import_paddleslim("qat")
    return slim.QAT(config={"weight_quantize_type": stage.weight_quantize_type,
                            "activation_quantize_type": stage.activation_quantize_type,
                            "moving_rate": float(stage.moving_rate), "weight_bits": 8, "activation_bits": 8,
                            "quantizable_layer_type": ["Conv2D", "Linear"], "onnx_format": True})


def observers(net: paddle.nn.Layer) -> list[paddle.nn.Layer]:
    return [m for m in net.sublayers() if type(m).__name__ in OBSERVERS]


@paddle.no_grad()
def calibrate_observers(nets: Sequence[paddle.nn.Layer], loader: Any, *, batches: int) -> int:
    """Run ``batches`` batches through quantised ``nets`` with only the range observers in training mode.

    BatchNorm statistics, dropout and the weights stay as they are; the activation scales get values from
    real data, so the model is usable even without fine-tuning. Returns the batches run.
    """
    if batches <= 0:
        return 0
    obs = [o for net in nets for o in observers(net)]
    for net in nets:
        net.eval()
    for o in obs:
        o.train()
    done = 0
    try:
        for batch in loader:
            x = batch[0]
            for net in nets:
                net(x)
            done += 1
            if done >= batches:
                break
    finally:
        for net in nets:
            net.eval()
    return done


def save_qat_model(quanter: Any, net: paddle.nn.Layer, prefix: str, *, input_shape: Sequence[int],
                   input_name: str = "x") -> str:
    """``save_quantized_model`` with a dynamic batch: int8 weights and the learned activation scales.

    ``net`` is converted to a static function in place: compute dygraph outputs before calling this.
    """
    net.eval()
    spec = [paddle.static.InputSpec(shape=[None, *[int(s) for s in input_shape]], dtype="float32", name=input_name)]
    def save(layer: paddle.nn.Layer) -> str:
        with warnings.catch_warnings():  # Paddle warns that input_spec is unused by its own inner to_static call
            warnings.filterwarnings("ignore", message="full_graph=False")
            quanter.save_quantized_model(layer, prefix, input_spec=spec)
        return prefix

    return _compat.jit_save_retrying(save, net)


# ------------------------------------------------------------------------------------------------------ PTQ
def calibration_array(dataset: Any, *, samples: int, seed: int, field: str) -> np.ndarray:
    """Up to ``samples`` inputs of ``dataset`` drawn with ``seed``, stacked ``[n, ...]`` float32.

    Raises:
        ValueError: the dataset is missing or empty (names ``field``).
    """
    n = 0 if dataset is None else len(dataset)
    if n == 0:
        raise ConfigError(f"{field}: the calibration set is empty (no samples in that split); pick a split with "
                         "samples (train or val) or give the run a validation split (data.val_split > 0)")
    idx = np.sort(np.random.default_rng(seed).permutation(n)[: min(int(samples), n)])
    return np.stack([np.asarray(dataset[int(i)][0], dtype=np.float32) for i in idx])


class _ArrayDataset(paddle.io.Dataset):
    """Samples of an in-memory ``[N, ...]`` array (calibration only)."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.x[i]


def calibration_loader(x: np.ndarray, *, feed_name: str, batch_size: int) -> paddle.io.DataLoader:
    """A static-mode ``paddle.io.DataLoader`` yielding ``[{feed_name: batch}]`` (call inside static mode).

    Raises:
        ValueError: ``x`` is empty.
    """
    if len(x) == 0:
        raise ConfigError("calibration: the calibration array is empty; pass at least one sample")
    var = paddle.static.data(name=feed_name, shape=[None, *x.shape[1:]], dtype="float32")
    return paddle.io.DataLoader(_ArrayDataset(x), feed_list=[var], places=paddle.CPUPlace(), return_list=False,
                                batch_size=int(batch_size), shuffle=False, drop_last=False)


def quantize_post_static(model_dir: str, out_dir: str, calibration: np.ndarray, *, stage: PTQStage,
                         model_filename: str, params_filename: str, feed_name: str = "x",
                         field: str = "calibration") -> dict[str, Any]:
    """Quantise the fp32 inference model in ``model_dir`` into ``out_dir`` (same file names).

    Args:
        model_dir: folder of the fp32 ``model_filename`` / ``params_filename``.
        out_dir: folder for the int8 model.
        calibration: ``[N, ...]`` float32 inputs, preprocessed like the model's inputs.
        stage: algorithm, batch size and weight quantisation.
        feed_name: the model's input name.
        field: config field named in errors.

    Returns:
        ``{"calibration_samples", "batches"}``.

    Raises:
        ValueError: ``calibration`` is empty (names ``field``).
    """
    if calibration is None or len(calibration) == 0:
        raise ConfigError(f"{field}: the calibration set is empty; PTQ needs at least one sample")
    slim = import_paddleslim("ptq")
    batches = -(-len(calibration) // stage.batch_size)
    # PaddleSlim's quant_post_static reads and writes legacy (.pdmodel) programs: on Paddle 3.x it runs with
    # the legacy program IR switched on (the caller hands it a .pdmodel program)
    with _compat.legacy_program_guard():
        _run_quant_post_static(slim, model_dir, out_dir, calibration, stage=stage, batches=batches,
                               model_filename=model_filename, params_filename=params_filename, feed_name=feed_name)
    return {"calibration_samples": int(len(calibration)), "batches": int(batches)}


def _run_quant_post_static(slim: Any, model_dir: str, out_dir: str, calibration: np.ndarray, *, stage: PTQStage,
                           batches: int, model_filename: str, params_filename: str, feed_name: str) -> None:
    paddle.enable_static()
    try:
        main, startup = paddle.static.Program(), paddle.static.Program()
        # a fresh scope as the global one: PaddleSlim loads the model into global_scope() whatever scope it gets
        with paddle.static.program_guard(main, startup), paddle.utils.unique_name.guard(), \
                paddle.static.scope_guard(paddle.static.Scope()):
            loader = calibration_loader(calibration, feed_name=feed_name, batch_size=stage.batch_size)
            slim.quant.quant_post_static(
                executor=paddle.static.Executor(paddle.CPUPlace()), model_dir=model_dir, quantize_model_path=out_dir,
                data_loader=loader, model_filename=model_filename, params_filename=params_filename,
                save_model_filename=model_filename, save_params_filename=params_filename,
                batch_size=stage.batch_size, batch_nums=batches, algo=stage.algo,
                hist_percent=stage.hist_percent, bias_correction=stage.bias_correction,
                weight_quantize_type=stage.weight_quantize_type, activation_quantize_type="moving_average_abs_max",
                onnx_format=True)
    finally:
        paddle.disable_static()
