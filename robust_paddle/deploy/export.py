"""``robust-paddle export``: static-graph export with proven parity, ONNX and a PaddleServing package.

Steps of ``pipeline.commands.export_command`` (:func:`prepare_export`, then :func:`export_run`):

1. Rebuild the run from the config on CPU and load the checkpoint (``pipeline.build.load_run``); pick the network to
   export (``export.network``: a method's network name, ``"ensemble"`` = averaged logits of all networks,
   ``"auto"`` = the method's default) and, when asked (``export.use_ema``, or ``train.ema.enabled`` with
   ``train.ema.eval``), load the EMA weights the checkpoint holds under ``hooks.ema.shadow``.
2. Optionally append a softmax (``export.softmax``) so the model outputs probabilities.
3. Compute the dygraph reference outputs on a real batch (the test split, else val, else train; the first
   ``export.batch_for_parity`` samples) and on its first sample alone.
4. ``paddle.jit.to_static`` with ``InputSpec([None, *input_shape])`` (dynamic batch) and ``paddle.jit.save``
   -> ``inference.pdmodel`` / ``inference.pdiparams`` (Paddle 3.x: ``inference.json``), plus ``inference.yml``.
5. Parity with ``paddle.inference.create_predictor`` on CPU, at the batch size and at batch 1:

   * ``paddle_program``: the saved program run op by op (no IR fusion, no oneDNN) must match the dygraph
     outputs within ``export.parity_atol`` (max abs difference, fp32);
   * ``paddle_optimized``: the deployment predictor (IR fusion passes + oneDNN, what ``robust-paddle serve``
     runs) fuses conv + batch norm and reorders float sums, so it is held to
     ``|out - ref| <= parity_atol + parity_rtol * |ref|`` elementwise (``numpy.allclose`` semantics);
   * ``onnx``: ``paddle2onnx`` -> ``inference.onnx``, run with onnxruntime, same rule as ``paddle_optimized``;
   * ``serving``: the program copied into ``serving_server/`` runs exactly like ``paddle_program``, and both
     Serving configs parse back with the declared feed/fetch names, types and shapes.

6. ``export_report.json`` records every check; any failure raises :class:`ParityError` after the report is
   written (the CLI prints one line and exits 2).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import paddle

from robust_paddle import _compat
from robust_paddle.config import Config
from robust_paddle.data.tokenize import TOKENIZER_FILE
from robust_paddle.deploy.predictor import INFO_FILE, MODEL_PREFIX, ModelInfo, OnnxPredictor, PaddlePredictor
from robust_paddle.engine.trainer import Run
from robust_paddle.errors import CheckpointError, ConfigError, MissingDependencyError, RobustPaddleError

logger = logging.getLogger(__name__)

FORMATS = ("paddle", "onnx", "serving")
REPORT_FILE = "export_report.json"
ONNX_FILE = "inference.onnx"
ONNX_OPSET = 13
INPUT_NAME = "x"


class ParityError(RobustPaddleError, ValueError):
    """An exported model's outputs differ from the trained model's by more than the configured tolerance."""


class SoftmaxHead(paddle.nn.Layer):
    """``softmax(net(x))`` over the class axis: probabilities ``[N, C]`` instead of logits."""

    def __init__(self, net: paddle.nn.Layer) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.nn.functional.softmax(self.net(x), axis=-1)


# -------------------------------------------------------------------------------------------- selection
def check_formats(formats: Sequence[str]) -> list[str]:
    """Validate and de-duplicate export formats; ``serving`` and ``onnx`` need (and imply) ``paddle``."""
    if isinstance(formats, str) or not isinstance(formats, (list, tuple)) or not formats:
        raise ConfigError(f"export.formats must be a non-empty list of: {', '.join(FORMATS)}; got {formats!r}")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"export format {bad[0]!r} is not supported; choose from: {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in formats or f == "paddle"]


def load_ema_weights(networks: dict[str, paddle.nn.Layer], state: dict[str, Any], *, checkpoint: str) -> None:
    """Load the EMA shadow weights stored by the ``ema`` hook into ``networks`` (cast to their dtypes).

    Raises:
        ValueError: the checkpoint holds no EMA weights, or not for every network.
    """
    shadow = ((state.get("hooks") or {}).get("ema") or {}).get("shadow")
    if not shadow:
        raise CheckpointError(f"export.use_ema is true but checkpoint {checkpoint} holds no EMA weights; train with "
                         "train.ema.enabled=true, or set export.use_ema=false")
    missing = sorted(set(networks) - set(shadow))
    if missing:
        raise CheckpointError(f"checkpoint {checkpoint} has EMA weights for {sorted(shadow)} but not for {missing}")
    for name, net in networks.items():
        current = net.state_dict()
        absent = sorted(set(current) - set(shadow[name]))
        if absent:
            raise ConfigError(f"EMA weights of network {name!r} lack {absent[:5]}; they belong to another model")
        net.set_state_dict({k: paddle.to_tensor(shadow[name][k]).astype(v.dtype) for k, v in current.items()})


def wants_ema(cfg: Config, state: dict[str, Any]) -> bool:
    """EMA weights are exported when ``export.use_ema`` is set, or when the run evaluated with them
    (``train.ema.enabled`` and ``train.ema.eval``) and the checkpoint holds them."""
    if cfg.export.use_ema:
        return True
    has = bool(((state.get("hooks") or {}).get("ema") or {}).get("shadow"))
    return cfg.train.ema.enabled and cfg.train.ema.eval and has


def parity_batch(data: Any, size: int) -> np.ndarray:
    """The first ``size`` samples of the test split (else val, else train without augmentation), stacked
    into ``[B, *input_shape]`` exactly as evaluation feeds them (float32; int64 token ids for texts)."""
    for ds in (data.test, data.val, data.train_eval):
        if ds is not None and len(ds) > 0:
            n = min(int(size), len(ds))
            rows = [np.asarray(ds[i][0]) for i in range(n)]
            return np.stack(rows).astype(np.int64 if rows[0].dtype.kind in "iu" else np.float32)
    raise ConfigError("the run's data has no samples to check export parity on")


# ------------------------------------------------------------------------------------------------ export
def save_static(net: paddle.nn.Layer, out_dir: str, *, input_shape: Sequence[int], dtype: str = "float32",
                legacy: bool = False) -> str:
    """``to_static`` with a dynamic batch dimension and ``jit.save``; returns the path prefix.

    Args:
        net: in eval mode; its ``forward`` is converted in place (compute dygraph references first).
        out_dir: folder for ``inference.pdmodel`` / ``.pdiparams`` (or ``.json`` on Paddle 3.x).
        input_shape: one sample, e.g. (1, 8, 8). dtype: ``float32``, or ``int64`` for token ids ``[N, L]``.
        legacy: write the pre-PIR ``.pdmodel`` program even on Paddle 3.x (``_compat.legacy_program_guard``),
            for PaddleServing 0.9.
    """
    spec = [paddle.static.InputSpec(shape=[None, *[int(s) for s in input_shape]], dtype=dtype, name=INPUT_NAME)]
    prefix = os.path.join(out_dir, MODEL_PREFIX)
    def save(layer: paddle.nn.Layer) -> str:
        with _compat.legacy_program_guard() if legacy else contextlib.nullcontext():
            paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), prefix)
        return prefix

    return _compat.jit_save_retrying(save, net)


def model_version(prefix: str, interface: dict[str, Any]) -> str:
    """First 12 hex digits of a SHA-256 over the weight file and the model's interface (input shape, softmax,
    preprocessing, classes, model name ...): the same weights exported the same way get the same version.
    The program file is left out because ``jit.save`` numbers its variables with process-wide counters."""
    h = hashlib.sha256(json.dumps(interface, sort_keys=True).encode())
    with open(_compat.params_file(prefix), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def export_onnx(prefix: str, path: str, *, opset: int = ONNX_OPSET) -> str:
    """Convert the saved Paddle model to ONNX with paddle2onnx (1.x reads Paddle 2.6's ``.pdmodel``; 2.x also
    reads Paddle 3's PIR ``.json``).

    Raises:
        ImportError: paddle2onnx is not installed. CompatibilityError: the installed paddle2onnx cannot read
        this Paddle's program format (e.g. paddle2onnx 1.x with Paddle 3).
    """
    try:
        import paddle2onnx
    except ImportError as e:
        raise MissingDependencyError("ONNX export needs paddle2onnx and onnxruntime: pip install -e .[export]") from e
    model = _compat.model_file(prefix)
    version = getattr(paddle2onnx, "__version__", "0")
    _compat.check_paddle2onnx_reads(model, version)
    paddle2onnx.export(model, _compat.params_file(prefix), save_file=path, opset_version=opset,
                       auto_upgrade_opset=True, verbose=False, enable_onnx_checker=True,
                       **_compat.paddle2onnx_options(version))
    return path


# ------------------------------------------------------------------------------------------------ parity
def compare(outputs: np.ndarray, reference: np.ndarray, *, atol: float, rtol: float = 0.0) -> dict[str, Any]:
    """Elementwise ``|out - ref| <= atol + rtol * |ref|``; returns the max abs difference and the verdict."""
    if outputs.shape != reference.shape:
        return {"passed": False, "max_abs_diff": None, "atol": atol, "rtol": rtol,
                "error": f"output shape {list(outputs.shape)} != reference {list(reference.shape)}"}
    diff = np.abs(outputs.astype(np.float64) - reference.astype(np.float64))
    bound = atol + rtol * np.abs(reference.astype(np.float64))
    return {"passed": bool(np.all(diff <= bound)), "max_abs_diff": float(diff.max()), "atol": atol, "rtol": rtol}


def check_runner(runner: Any, x: np.ndarray, refs: tuple[np.ndarray, np.ndarray], *, atol: float,
                 rtol: float) -> dict[str, Any]:
    """Run ``runner`` on the batch and on its first sample (dynamic batch); merge both comparisons."""
    full = compare(runner(x), refs[0], atol=atol, rtol=rtol)
    one = compare(runner(x[:1]), refs[1], atol=atol, rtol=rtol)
    worst = max((r["max_abs_diff"] for r in (full, one) if r["max_abs_diff"] is not None), default=None)
    out = {"passed": full["passed"] and one["passed"], "max_abs_diff": worst, "atol": atol, "rtol": rtol,
           "batch_sizes": [int(x.shape[0]), 1]}
    errors = [r["error"] for r in (full, one) if "error" in r]
    if errors:
        out["error"] = errors[0]
    return out


def check_serving(out_dir: str, package: dict[str, Any], *, info: ModelInfo, feed_name: str,
                  fetch_name: str) -> dict[str, Any]:
    """Both Serving configs parse back with the expected feed/fetch fields (the names of the packaged program)."""
    from robust_paddle.deploy.serving_config import (
        CLIENT_CONF,
        SERVER_CONF,
        SERVING_DTYPES,
        read_model_config,
    )

    problems = []
    for folder, name in ((package["server_dir"], SERVER_CONF), (package["client_dir"], CLIENT_CONF)):
        cfg = read_model_config(os.path.join(folder, name))
        feed, fetch = cfg.feed_var[0], cfg.fetch_var[0]
        got = (feed.name, list(feed.shape), feed.feed_type, fetch.name, list(fetch.shape), fetch.fetch_type)
        want = (feed_name, list(info.input_shape), SERVING_DTYPES[info.input_dtype], fetch_name,
                [info.num_classes], SERVING_DTYPES["float32"])
        if len(cfg.feed_var) != 1 or len(cfg.fetch_var) != 1 or got != want:
            problems.append(f"{name}: got {got}, expected {want}")
    return {"passed": not problems, **({"error": "; ".join(problems)} if problems else {})}


# ------------------------------------------------------------------------------------------------ command
def prepare_export(cfg: Config, out_dir: str, formats: Sequence[str] | None = None) -> list[str]:
    """Check the export request before anything is loaded; returns the formats (``out_dir`` is created
    once the checkpoint has loaded).

    Raises:
        ValueError: bad formats, or ``out_dir`` already holds an export.
    """
    fmts = check_formats(list(formats) if formats is not None else list(cfg.export.formats))
    if os.path.exists(os.path.join(out_dir, INFO_FILE)):
        raise ConfigError(f"--out {out_dir} already holds an export ({INFO_FILE}); choose another folder or remove it")
    return fmts


def export_run(run: Run, state: dict[str, Any], *, checkpoint: str, out_dir: str,
               formats: Sequence[str]) -> dict[str, Any]:
    """Export the loaded ``run`` (rebuilt on CPU from ``checkpoint``, whose loaded ``state`` is given) to
    ``out_dir`` in ``formats`` and prove parity (``pipeline.commands.export_command`` loads the run).

    The references are computed on CPU, like the CPU predictors they are compared with (a GPU's conv
    kernels would differ from the CPU ones by more than parity_atol).

    Returns:
        The report also written to ``out_dir/export_report.json``: files, model version, the network and
        weights exported, and one parity entry per check (max abs difference, tolerances, verdict).

    Raises:
        ValueError: bad network / EMA request.
        ParityError: an exported model disagrees with the dygraph model (the report is written first).
    """
    cfg, fmts = run.cfg, list(formats)
    ec = cfg.export
    method = run.method
    use_ema = wants_ema(cfg, state)
    if use_ema:
        load_ema_weights(method.networks, state, checkpoint=checkpoint)
    which = ec.network
    net = method.export_network(which)
    if which == "auto":
        which = next(iter(method.networks)) if len(method.networks) == 1 else "ensemble"
    net = SoftmaxHead(net) if ec.softmax else net
    net.eval()
    input_shape = [int(s) for s in run.data.input_shape]
    x = parity_batch(run.data, ec.batch_for_parity)
    with paddle.no_grad():
        refs = (net(paddle.to_tensor(x)).numpy(), net(paddle.to_tensor(x[:1])).numpy())

    tok = getattr(run.data, "tokenizer", None)
    kind = "text" if tok is not None else ("image" if len(input_shape) == 3 else "tabular")
    dtype = "int64" if kind == "text" else "float32"
    text = None
    if tok is not None:  # the saved tokenizer and the long-text rule travel with the model
        tok.save(os.path.join(out_dir, TOKENIZER_FILE))
        tc = cfg.data.text
        text = {"tokenizer": TOKENIZER_FILE, "kind": tok.kind, "max_length": tok.max_length,
                "truncation": tok.truncation, "head_tokens": tok.head_tokens, "window_length": tc.window_length,
                "window_stride": tc.window_stride, "window_aggregate": tc.window_aggregate,
                "pairs": bool(tc.text_pair_column), "max_chars": tc.max_chars}
    prefix = save_static(net, out_dir, input_shape=input_shape, dtype=dtype)
    exact = PaddlePredictor(prefix, optimized=False, input_dtype=dtype)
    resize_short = int(getattr(run.data.train_eval.pipeline, "resize_short", 0))
    interface = {"input_shape": input_shape, "softmax": ec.softmax, "mean": list(run.data.mean),
                 **({"resize_short": resize_short} if resize_short else {}),
                 "std": list(run.data.std), "class_names": [str(c) for c in run.data.class_names],
                 "model": cfg.model.name, "model_params": cfg.model.params, "network": which,
                 **({"text": text, "vocab": tok.vocab} if tok is not None else {})}
    info = ModelInfo(model_dir=out_dir, input_name=exact.input_name, input_shape=tuple(input_shape),
                     kind=kind, text=text, output_name=exact.output_name,
                     softmax=ec.softmax, mean=tuple(run.data.mean), std=tuple(run.data.std),
                     class_names=tuple(str(c) for c in run.data.class_names),
                     model_version=model_version(prefix, interface),
                     source={"checkpoint": os.path.abspath(checkpoint), "epoch": int(state["epoch"]),
                             "method": cfg.method.name, "model": cfg.model.name, "network": which, "ema": use_ema,
                             "dataset": cfg.data.name},
                     resize_short=resize_short)
    files = {"model": _compat.model_file(prefix), "params": _compat.params_file(prefix), "info": info.save()}
    if tok is not None:
        files["tokenizer"] = os.path.join(out_dir, TOKENIZER_FILE)
    parity = {
        "paddle_program": check_runner(exact, x, refs, atol=ec.parity_atol, rtol=0.0),
        "paddle_optimized": check_runner(PaddlePredictor(prefix, optimized=True, input_dtype=dtype), x, refs,
                                         atol=ec.parity_atol,
                                         rtol=ec.parity_rtol),
    }
    if "onnx" in fmts:
        files["onnx"] = export_onnx(prefix, os.path.join(out_dir, ONNX_FILE))
        parity["onnx"] = check_runner(OnnxPredictor(files["onnx"]), x, refs, atol=ec.parity_atol, rtol=ec.parity_rtol)
    if "serving" in fmts:
        from robust_paddle.deploy.serving_config import SERVER_DIR, write_serving_package

        # Serving 0.9 reads only the pre-PIR .pdmodel program: on Paddle 3.x (PIR .json) the network is
        # saved once more as a legacy program for the package; on 2.x the exported program is copied.
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            program = prefix
            if _compat.model_file(prefix).endswith(".json"):
                program = save_static(net, tmp, input_shape=input_shape, dtype=dtype, legacy=True)
            names = PaddlePredictor(program, optimized=False, input_dtype=dtype)
            package = write_serving_package(program, out_dir, feed_name=names.input_name,
                                            fetch_name=names.output_name, input_shape=input_shape,
                                            num_classes=info.num_classes, softmax=ec.softmax,
                                            input_dtype=dtype)
        files["serving"] = package["files"]
        served = PaddlePredictor(os.path.join(out_dir, SERVER_DIR, MODEL_PREFIX), optimized=False, input_dtype=dtype)
        parity["serving"] = {**check_runner(served, x, refs, atol=ec.parity_atol, rtol=0.0),
                             "config": check_serving(out_dir, package, info=info, feed_name=served.input_name,
                                                     fetch_name=served.output_name)}
        parity["serving"]["passed"] = parity["serving"]["passed"] and parity["serving"]["config"]["passed"]

    failed = [name for name, r in parity.items() if not r["passed"]]
    report = {"out_dir": os.path.abspath(out_dir), "formats": fmts, "model_version": info.model_version,
              "input_shape": input_shape, "num_classes": info.num_classes, "softmax": ec.softmax,
              "source": info.source, "parity_samples": int(x.shape[0]), "parity": parity, "passed": not failed,
              "files": files}
    with open(os.path.join(out_dir, REPORT_FILE), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    for name, r in parity.items():
        logger.info("parity %-16s max|diff| %s  %s", name, r.get("max_abs_diff"), "ok" if r["passed"] else "FAILED")
    if failed:
        details = "; ".join(f"{n}: max|diff| {parity[n].get('max_abs_diff')} (atol {parity[n].get('atol')}, "
                            f"rtol {parity[n].get('rtol')}){' ' + parity[n]['error'] if 'error' in parity[n] else ''}"
                            for n in failed)
        raise ParityError(f"export parity failed for {', '.join(failed)} ({details}); see "
                          f"{os.path.join(out_dir, REPORT_FILE)}")
    return report
