"""Shared helpers of the noise benchmarks: method / noise specs, per-run configs, JSON results, tables.

A *method spec* is a ``METHODS`` name, or ``standard+<loss>`` for the standard method with a ``LOSSES``
entry (``standard+gce``), then optionally ``@known_t`` and a ``:key=value[:key=value]`` tail of ``method.params``
(YAML values without commas: the specs of ``--methods`` are comma-separated). A *noise spec* is ``sym20``, ``pair45``, ``asym40`` ... (kind + percent) or
``clean``. Method presets come from the shipped config of the method on the dataset (e.g.
``configs/dividemix/digits.yaml``, ``configs/co_teaching/plus_digits.yaml``; its ``method`` and ``loss``
sections), so the benchmark uses the same recipes as the shipped configs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import sys
import time
from typing import Any

import robust_paddle  # noqa: F401  (first: zlib shim before paddle)
from robust_paddle import config as config_mod
from robust_paddle.registry import LOSSES, METHODS, accepted_kwargs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
NOISE_KINDS = {"sym": "symmetric", "pair": "pair", "asym": "asymmetric"}
#: losses of the standard method and their parameters in the benchmark (GCE q from Zhang & Sabuncu 2018,
#: SCE alpha/beta from Wang et al. 2019 for 10 classes)
STANDARD_LOSSES: dict[str, dict[str, Any]] = {"ce": {}, "gce": {"q": 0.7}, "sce": {"alpha": 0.1, "beta": 1.0}}
#: no-op overrides that make benchmark runs cheap: no progress bars, VisualDL, report or epoch checkpoints
QUIET = {"train.progress": False, "train.visualdl": False, "train.report": False, "train.checkpoint_every": 0}


def default_methods() -> list[str]:
    """``standard+ce/gce/sce`` then every other registered method, alphabetically."""
    import robust_paddle.methods  # noqa: F401  (registers METHODS)

    return [f"standard+{loss}" for loss in STANDARD_LOSSES] + [m for m in METHODS.names() if m != "standard"]


def parse_noise(spec: str) -> tuple[str, float]:
    """``"sym40"`` -> ``("symmetric", 0.4)``; ``"clean"`` -> ``("none", 0.0)``."""
    if spec == "clean":
        return "none", 0.0
    m = re.fullmatch(r"(sym|pair|asym)-?(\d{1,2}(?:\.\d+)?)", spec)
    if not m:
        raise ValueError(f"noise spec {spec!r}: use sym|pair|asym followed by a percent, e.g. sym40, pair45, "
                         "asym40, or 'clean'")
    return NOISE_KINDS[m.group(1)], float(m.group(2)) / 100.0


#: ``<method>@known_t``: a method with a ``transition`` parameter given the injected noise's true matrix -- an
#: upper-bound reference (like the oracle), never counted as "the best method"
KNOWN_T = "@known_t"


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """A method spec's ``:key=value`` tail, the ``method.params`` it sets (values parsed as YAML):
    ``"promix:networks=1"`` -> ``("promix", {"networks": 1})``; ``"dividemix"`` -> ``("dividemix", {})``.

    Raises:
        ValueError: a part of the tail that is not ``key=value``.
    """
    name, *pairs = spec.split(":")
    params = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise ValueError(f"method spec {spec!r}: {pair!r} is not key=value (e.g. promix:networks=1)")
        if KNOWN_T in pair:
            raise ValueError(f"method spec {spec!r}: {KNOWN_T} goes before the :key=value tail "
                             f"(e.g. forward_correction{KNOWN_T}:identity_weight=0.1)")
        if key in params:
            raise ValueError(f"method spec {spec!r}: {key!r} is given twice")
        params[key] = config_mod.yaml_load(value)
    return name, params


def check_spec(spec: str, *, noises: list[str], dataset: str, epochs: int, base: config_mod.Config | None = None,
               num_classes: int = 10) -> None:
    """Check everything about a method spec that can be checked before any training: the method and loss names,
    the tail's syntax and, for every noise spec, the ``method.params`` its run gets (preset + tail,
    :func:`run_overrides`) against the method's parameters (unknown keys, types, ranges, choices: the registry's
    checks). With ``base``, the run of the first noise spec is also built (data, method, optimizer; nothing
    written, ~0.2 s on digits), so what the method checks against the run (an epoch count that leaves no training
    after a warm-up, one parameter against another) fails here too.

    Raises:
        ValueError: (or ConfigError, DataError) naming the spec and what is wrong.
    """
    name, _ = parse_method(spec)
    try:
        for nz in noises:
            values = run_overrides(spec, nz, dataset=dataset, seed=0, epochs=epochs, num_classes=num_classes)
            METHODS.check(name, values["method.params"], positional=1, field="method.params")  # ctx comes first
        if base is not None and noises:
            dry_build(base, run_overrides(spec, noises[0], dataset=dataset, seed=0, epochs=epochs,
                                          num_classes=num_classes))
    except ValueError as e:  # the toolkit's errors keep their type; others (UnicodeDecodeError ...) become ValueError
        from robust_paddle.errors import RobustPaddleError

        raise (type(e) if isinstance(e, RobustPaddleError) else ValueError)(f"method spec {spec!r}: {e}") from e


def dry_build(base: config_mod.Config, values: dict[str, Any]) -> None:
    """Build the run of ``values`` on ``base`` (as a benchmark run is built) into a temporary folder and drop it."""
    import tempfile

    import paddle

    from robust_paddle.methods.base import check_method_settings
    from robust_paddle.pipeline.build import build_run

    with tempfile.TemporaryDirectory(prefix="bench_check_") as tmp, paddle.utils.unique_name.guard():
        cfg = build_cfg(base, values, tmp)
        check_method_settings(cfg)
        build_run(cfg, output_dir=tmp)


def run_name(spec: str) -> str:
    """A folder name for the runs of method spec ``spec``: the spec itself when it is made of letters, digits and
    ``_+.@=-`` only, else those characters with the others as ``_`` and a short hash of the spec (a value that is
    a path, ``forward_correction:transition=/data/T.npy``, must not make nested folders or meet another spec's)."""
    safe = re.sub(r"[^A-Za-z0-9_+.@=-]", "_", spec)
    if safe == spec:
        return spec
    import hashlib

    return f"{safe}-{hashlib.sha1(spec.encode()).hexdigest()[:8]}"


def parse_method(spec: str) -> tuple[str, str | None]:
    """``"standard+gce"`` -> ``("standard", "gce")``; ``"dividemix"`` -> ``("dividemix", None)``;
    ``"forward_correction@known_t"`` -> ``("forward_correction", None)``; a ``:key=value`` tail
    (:func:`split_spec`) is checked and left out."""
    import robust_paddle.losses  # noqa: F401  (registers LOSSES)
    import robust_paddle.methods  # noqa: F401

    spec = split_spec(spec)[0]
    name, _, loss = spec.removesuffix(KNOWN_T).partition("+")
    if spec.endswith(KNOWN_T) and name in METHODS and "transition" not in accepted_kwargs(METHODS.get(name))[0]:
        raise ValueError(f"method spec {spec!r}: {KNOWN_T} needs a method with a 'transition' parameter")
    if name not in METHODS:
        raise ValueError(f"method spec {spec!r}: unknown method {name!r}; choose one of: {', '.join(METHODS.names())}")
    if loss and loss not in LOSSES:
        raise ValueError(f"method spec {spec!r}: unknown loss {loss!r}; choose one of: {', '.join(LOSSES.names())}")
    return name, loss or None


def cell_dir(workdir: str, method: str, noise: str, seed: int) -> str:
    """The run folder of one benchmark cell (``<run_name(method)>-<noise>-s<seed>`` in ``workdir``), called when the
    cell is about to train. A folder already there is the leftover of the same cell that did not finish (a killed
    benchmark rerun with ``--resume`` and the same ``--workdir``: finished cells are not trained again), and training
    would refuse it; it is removed and the cell trains from its start (benchmark runs write no checkpoints)."""
    out = os.path.join(workdir, f"{run_name(method)}-{noise}-s{seed}")
    if os.path.isdir(out):
        import shutil

        logging.getLogger(__name__).warning("%s holds an unfinished run of this cell: removed, the cell trains anew",
                                            out)
        shutil.rmtree(out)
    return out


def parse_plain_method(spec: str) -> tuple[str, str | None]:
    """:func:`parse_method` for the benchmarks that take ``method[+loss]`` only (no ``@known_t``, no tail)."""
    if ":" in spec or spec.endswith(KNOWN_T):
        raise ValueError(f"method spec {spec!r}: this benchmark takes method[+loss] names only (no {KNOWN_T}, no "
                         ":key=value tail)")
    return parse_method(spec)


def preset_path(method: str, dataset: str) -> str | None:
    """The shipped config of ``method`` on ``dataset``: ``configs/<dir>/<dataset>.yaml`` or
    ``configs/<dir>/<variant>_<dataset>.yaml`` whose resolved ``method.name`` is ``method`` (None if none)."""
    root = os.path.join(ROOT, "configs")
    exact, variants = [], []
    for sub in sorted(os.listdir(root)):
        folder = os.path.join(root, sub)
        if not os.path.isdir(folder) or sub.startswith("_"):
            continue
        for fname in sorted(os.listdir(folder)):
            if fname == f"{dataset}.yaml":
                exact.append(os.path.join(folder, fname))
            elif fname.endswith(f"_{dataset}.yaml") and not fname.startswith("_"):
                variants.append(os.path.join(folder, fname))
    for path in exact + variants:
        if (config_mod.load_yaml(path).get("method") or {}).get("name") == method:
            return path
    return None


def method_preset(method: str, dataset: str) -> dict[str, Any]:
    """``method``/``loss`` sections (and ``data.strong_augment``, when set) of the method's shipped config for
    ``dataset`` as dotted overrides ({} when there is none; see :func:`preset_path`)."""
    path = preset_path(method, dataset)
    if path is None:
        return {}
    data = config_mod.load_yaml(path)
    out: dict[str, Any] = {}
    for section in ("method", "loss"):
        for key, value in (data.get(section) or {}).items():
            out[f"{section}.{key}"] = value
    if "strong_augment" in (data.get("data") or {}):  # the strong view of ProMix / SOP+ belongs to the recipe
        out["data.strong_augment"] = data["data"]["strong_augment"]
    return out


def true_transition(noise_spec: str, *, num_classes: int, dataset: str) -> list[list[float]]:
    """The nominal transition matrix of ``noise_spec`` (what ``@known_t`` runs are given)."""
    from robust_paddle.data.noise import asymmetric_matrix, pair_matrix, symmetric_matrix

    kind, rate = parse_noise(noise_spec)
    if kind == "asymmetric":
        return asymmetric_matrix(num_classes, rate, "auto", dataset=dataset).tolist()
    if kind == "none":
        return [[float(i == j) for j in range(num_classes)] for i in range(num_classes)]
    return (symmetric_matrix if kind == "symmetric" else pair_matrix)(num_classes, rate).tolist()


def run_overrides(method_spec: str, noise_spec: str, *, dataset: str, seed: int, epochs: int,
                  num_classes: int = 10) -> dict[str, Any]:
    """Dotted overrides for one benchmark run (applied on top of the base config); a spec's ``:key=value`` tail
    (:func:`split_spec`) overrides the preset's ``method.params``."""
    method, loss = parse_method(method_spec)
    method_spec, explicit = split_spec(method_spec)
    kind, rate = parse_noise(noise_spec)
    values: dict[str, Any] = {"seed": seed, "train.epochs": epochs, "data.noise.kind": kind,
                              "data.noise.rate": rate, "data.noise.seed": None, "method.name": method,
                              "method.params": {}, **QUIET}
    if method == "standard":
        loss = loss or "ce"
        values.update({"loss.name": loss, "loss.params": dict(STANDARD_LOSSES.get(loss, {}))})
    else:
        values.update({"loss.name": loss or "ce", "loss.params": {}})
        values.update(method_preset(method, dataset))
        if loss:
            values.update({"loss.name": loss, "loss.params": dict(STANDARD_LOSSES.get(loss, {}))})
    params = dict(values.get("method.params") or {})
    names, _ = accepted_kwargs(METHODS.get(method))
    if "noise_mode" in names:  # DivideMix-style methods: confidence penalty for asymmetric noise
        params["noise_mode"] = "asym" if kind in ("pair", "asymmetric") else "sym"
    if "lambda_u" in names and kind == "symmetric" and rate < 0.3:
        params["lambda_u"] = 0.0  # DivideMix's preset below 30% symmetric noise (Li et al. 2020, Table 7)
    if method_spec.endswith(KNOWN_T):
        params["transition"] = true_transition(noise_spec, num_classes=num_classes, dataset=dataset)
    values["method.params"] = {**params, **explicit}
    return values


def num_classes_of(base: config_mod.Config) -> int:
    """C of the base config's dataset (reads the source once)."""
    import robust_paddle.data  # noqa: F401  (registers DATASETS)
    from robust_paddle.registry import DATASETS

    return len(DATASETS.get(base.data.name)(base.data).class_names)


def build_cfg(base: config_mod.Config, values: dict[str, Any], out_dir: str) -> config_mod.Config:
    return config_mod.with_values(base, {**values, "output_dir": out_dir})


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def fmt_ms(mean: float, std: float, *, scale: float = 100.0, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def environment() -> dict[str, Any]:
    import numpy as np
    import paddle

    return {"python": platform.python_version(), "paddle": paddle.__version__, "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "device": paddle.get_device(), "platform": platform.platform(),
            "argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def uptime() -> str:
    """The machine load as ``uptime`` prints it (recorded next to every timing)."""
    return os.popen("uptime").read().strip()


def save_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=float)
    os.replace(tmp, path)


def add_common_args(p: argparse.ArgumentParser, *, config: str, noises: str, seeds: int, epochs: int) -> None:
    p.add_argument("-c", "--config", default=config, help=f"base config (default: {os.path.relpath(config, ROOT)})")
    p.add_argument("--dataset", default=None, help="data.name override (DATASETS registry), e.g. mnist")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run (repeatable), e.g. data.subset=500")
    p.add_argument("--noises", default=noises, help=f"comma-separated noise specs (default: {noises})")
    p.add_argument("--seeds", type=int, default=seeds, help=f"number of seeds 0..n-1 (default: {seeds})")
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs per run (default: {epochs})")
    p.add_argument("--workdir", default=None, help="folder for the run outputs (default: a temp folder)")
    p.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/<name>-<dataset>.json)")
    p.add_argument("--resume", action="store_true", help="keep finished runs found in --out and do the rest")


def load_base(args: argparse.Namespace) -> config_mod.Config:
    overrides = list(args.override) + ([f"data.name={args.dataset}"] if args.dataset else [])
    return config_mod.load(args.config, overrides)


def start(args: argparse.Namespace, *, name: str, methods: list[str], resumable: Any,
          parser: argparse.ArgumentParser | None = None, preset_dataset: str | None = None,
          ) -> tuple[config_mod.Config, list[str], list[str], str, list[dict[str, Any]]]:
    """Shared start of the noise benchmarks: warning-level logging, the base config, checked method and noise
    specs, the results path (``--out`` or ``results/<name>-<dataset>.json``) and, with ``--resume``, the runs
    ``resumable(old_results)`` keeps from that file.

    A bad override, noise spec or method spec (:func:`check_spec`, with the presets of ``preset_dataset``, default
    the base config's dataset) stops here, before any training, with one line and exit status 2 (``parser.error``).

    Returns:
        ``(base, methods, noises, out, runs)``.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        base = load_base(args)
        noises = split_list(args.noises)
        if not methods or not noises:
            raise ValueError(f"--{'methods' if not methods else 'noises'}: no spec given (comma-separated specs, e.g. "
                             f"{'standard+ce,dividemix' if not methods else 'sym40,pair45'})")
        for flag, specs in (("--methods", methods), ("--noises", noises)):
            twice = sorted({s for s in specs if specs.count(s) > 1})
            if twice:  # one cell / run folder / table row per spec
                raise ValueError(f"{flag}: {', '.join(map(repr, twice))} given twice")
        for nz in noises:
            parse_noise(nz)
        num_classes = num_classes_of(base) if any(split_spec(m)[0].endswith(KNOWN_T) for m in methods) else 10
        for dry in (None, base):  # every spec's names and params first (instant), then the dry builds
            for m in methods:
                check_spec(m, noises=noises, dataset=preset_dataset or base.data.name, epochs=args.epochs, base=dry,
                           num_classes=num_classes)
    except ValueError as e:  # ConfigError too
        if parser is None:
            print(f"{name}: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        parser.error(str(e))
    out = args.out or os.path.join(RESULTS, f"{name}-{base.data.name}.json")
    runs: list[dict[str, Any]] = []
    if args.resume and os.path.isfile(out):
        with open(out, encoding="utf-8") as fh:
            runs = list(resumable(json.load(fh)))
    return base, methods, noises, out, runs


def split_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the DataLoader workers of an
    epoch are joined when its iteration ends). On a shared machine this measures the work done, which the
    other jobs' load does not inflate the way it inflates wall-clock time."""
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def epoch_timer() -> Any:
    """A trainer hook recording each epoch's wall-clock: ``train_s`` (epoch start to the last optimizer
    step) and ``epoch_s`` (to the end of ``method.after_epoch``: the method's per-epoch passes included), and
    ``train_cpu_s`` / ``cpu_s`` (:func:`cpu_seconds` over the same spans) in
    ``.rows`` (priority 0: the first ``after_epoch`` hook, before any evaluation)."""
    from robust_paddle.engine.hooks import Hook

    class EpochTimer(Hook):
        priority = 0
        name = "epoch_timer"

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []

        def before_epoch(self, trainer: Any) -> None:
            self._t0 = self._t1 = time.perf_counter()
            self._c0 = self._c1 = cpu_seconds()

        def after_step(self, trainer: Any, terms: dict[str, float]) -> None:
            self._t1, self._c1 = time.perf_counter(), cpu_seconds()

        def after_epoch(self, trainer: Any) -> None:
            t2 = time.perf_counter()
            self.rows.append({"epoch": trainer.epoch + 1, "train_s": self._t1 - self._t0, "epoch_s": t2 - self._t0,
                              "train_cpu_s": self._c1 - self._c0, "cpu_s": cpu_seconds() - self._c0})

    return EpochTimer()
