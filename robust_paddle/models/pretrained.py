"""Pretrained weights for a freshly built network: partial loading with a key table, head re-initialisation,
the paddle.vision zoo, and the backbone / head split used by freezing and per-group learning rates.

A weights file is read weights-only by :func:`robust_paddle.engine.checkpoint.load_weights` (a ``.pdparams``
in the paddle.vision / PaddleClas zoo format -- a pickled ``{name: array}`` read through an allow-listed
unpickler --, a ``.safetensors`` file, or a robust_paddle checkpoint). Its keys are matched to the network's:

1. the same key;
2. the key without / with the ``backbone.`` prefix (``paddle.vision`` networks built here keep the original
   network under ``backbone``);
3. for the classification layer, the original network's name for it (``fc``, ``classifier.6`` ...;
   ``VisionClassifier.classifier_source``).

Every network key ends up ``loaded``, ``reinit`` (the head whose shape differs -- e.g. 1000 ImageNet classes
-> 10 --, or a key the file lacks: the network's fresh initialisation is kept) or the file key is ``unused``.
A backbone key whose shape differs is an error (a different architecture or channel count), and so is a file
in which no key matches.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import paddle
from paddle import nn

from robust_paddle.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

TABLE_FILE = "pretrained_keys.txt"

# paddle.vision zoo: factory name -> (module holding model_urls, key in it)
_ZOO_KEYS = {"mobilenet_v1": "mobilenetv1_1.0", "mobilenet_v2": "mobilenetv2_1.0",
             "mobilenet_v3_small": "mobilenet_v3_small_x1.0", "mobilenet_v3_large": "mobilenet_v3_large_x1.0"}
_ZOO_MODULES = ("resnet", "vgg", "mobilenetv1", "mobilenetv2", "mobilenetv3", "densenet", "shufflenetv2")


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_pretrained` did. ``rows``: ``(network key, status, file key, detail)`` with status
    ``loaded`` / ``reinit``; ``unused``: file keys no network key took."""

    source: str
    network: str
    rows: list[tuple[str, str, str, str]]
    unused: list[str]

    @property
    def loaded(self) -> list[str]:
        return [k for k, s, _, _ in self.rows if s == "loaded"]

    @property
    def reinitialised(self) -> list[str]:
        return [k for k, s, _, _ in self.rows if s == "reinit"]

    def table(self) -> str:
        """A fixed-width text table: one line per network key, then the unused file keys."""
        lines = [f"# {self.network} <- {self.source}: {len(self.loaded)} loaded, {len(self.reinitialised)} "
                 f"re-initialised, {len(self.unused)} unused", f"{'status':<8} {'network key':<48} {'file key':<48} detail"]
        lines += [f"{s:<8} {k:<48} {f or '-':<48} {d}" for k, s, f, d in self.rows]
        lines += [f"{'unused':<8} {'-':<48} {k:<48}" for k in self.unused]
        return "\n".join(lines) + "\n"


def head_keys(net: nn.Layer) -> set[str]:
    """State-dict keys of the classification layer: ``classifier.*`` for networks with the feature /
    classifier split, else the last ``nn.Linear``'s."""
    classifier = getattr(net, "classifier", None)
    if isinstance(classifier, nn.Layer):
        return {f"classifier.{k}" for k in classifier.state_dict()}
    last = None
    for path, layer in net.named_sublayers():
        if isinstance(layer, nn.Linear):
            last = path
    return set() if last is None else {f"{last}.{k}" for k in ("weight", "bias")}


def split_parameters(net: nn.Layer) -> tuple[list[paddle.Tensor], list[paddle.Tensor]]:
    """``(backbone, head)`` trainable parameters of ``net`` (head: see :func:`head_keys`).

    Raises:
        ConfigError: the network has no recognisable classification layer.
    """
    heads = head_keys(net)
    if not heads:
        raise ConfigError(f"{type(net).__name__} has no classifier layer (no 'classifier' attribute and no "
                          "nn.Linear), so model.freeze_epochs / optimizer.backbone_lr_mult cannot tell the head apart")
    named = dict(net.named_parameters())
    head = [p for k, p in named.items() if k in heads]
    return [p for k, p in named.items() if k not in heads], head


def _candidates(key: str, net: nn.Layer) -> list[str]:
    out = [key]
    if key.startswith("backbone."):
        out.append(key[len("backbone."):])
    else:
        out.append("backbone." + key)
    source = getattr(net, "classifier_source", None)
    if source and key.startswith("classifier."):
        out.append(f"{source}.{key[len('classifier.'):]}")
    return out


def match_state_dict(net: nn.Layer, weights: dict[str, np.ndarray], *, source: str,
                     network: str = "net") -> tuple[dict[str, np.ndarray], LoadReport]:
    """Match file ``weights`` to ``net``'s state dict (see the module docstring).

    Returns:
        ``(state to load {network key: array}, report)``.

    Raises:
        CheckpointError: nothing matches, or a backbone key has another shape (lists them).
    """
    target = net.state_dict()
    heads = head_keys(net)
    state, rows, used, bad = {}, [], set(), []
    for key, tensor in target.items():
        shape = [int(s) for s in tensor.shape]
        found = next((c for c in _candidates(key, net) if c in weights and c not in used), None)
        if found is None:
            rows.append((key, "reinit", "", "not in the file"))
            continue
        used.add(found)
        arr = np.asarray(weights[found])
        if list(arr.shape) != shape:
            if key in heads:
                rows.append((key, "reinit", found, f"head shape {list(arr.shape)} -> {shape}"))
                continue
            bad.append(f"{key} {shape} vs {found} {list(arr.shape)}")
            continue
        state[key] = arr.astype(np.dtype(str(tensor.numpy().dtype)), copy=False)
        rows.append((key, "loaded", found, ""))
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} backbone weight(s) have another shape than network "
                              f"'{network}' ({type(net).__name__}): {'; '.join(bad[:5])}; the file is for another "
                              "architecture, input channel count or model.params")
    if not state:
        raise CheckpointError(f"{source}: none of its {len(weights)} keys match network '{network}' "
                              f"({type(net).__name__}); the file has e.g. {', '.join(list(weights)[:3])}, the network "
                              f"e.g. {', '.join(list(target)[:3])}")
    unused = [k for k in weights if k not in used]
    return state, LoadReport(source=source, network=network, rows=rows, unused=unused)


def load_pretrained(net: nn.Layer, path: str, *, network: str = "net") -> LoadReport:
    """Load the weights file ``path`` into ``net`` (weights-only; partial, head re-initialised).

    Args:
        net: a freshly built network.
        path: ``.pdparams`` / ``.safetensors`` / robust_paddle checkpoint or run folder (its network
            ``network`` when it has one of that name, else its first).
        network: the name of ``net`` in its method (``net``, ``net1`` ...), for checkpoints and messages.

    Raises:
        FileNotFoundError, CheckpointError: see :func:`match_state_dict` and ``load_weights``.
    """
    from robust_paddle.engine.checkpoint import load_weights, resolve_checkpoint

    path = resolve_checkpoint(path) if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model.pretrained: weights file not found: {path}")
    try:
        weights = load_weights(path, network=network)
    except CheckpointError as e:
        if "has no network" not in str(e):
            raise
        weights = load_weights(path)
    state, report = match_state_dict(net, weights, source=path, network=network)
    target = net.state_dict()
    for key, arr in state.items():  # in place, key by key: the keys left out keep their initialisation
        target[key].set_value(arr)
    return report


def zoo_weights(name: str) -> str:
    """Download (once, into paddle's cache) the ImageNet weights of the ``paddle.vision.models`` factory
    ``name`` and return the local path (``model.download: true``; needs internet).

    Raises:
        ConfigError: the model has no zoo weights.
    """
    import paddle.vision.models as pvm
    from paddle.utils.download import get_weights_path_from_url

    key = _ZOO_KEYS.get(name, name)
    for module in _ZOO_MODULES:
        urls = getattr(getattr(pvm, module, None), "model_urls", {})
        if key in urls:
            url, md5 = urls[key]
            logger.info("model.download: fetching %s", url)
            return get_weights_path_from_url(url, md5)
    raise ConfigError(f"model.download: paddle.vision has no pretrained weights for model {name!r}; set "
                      "model.pretrained to a local weights file instead")


def save_reports(reports: list[LoadReport], out_dir: str, *, file: str = TABLE_FILE) -> str:
    """Write the reports' tables to ``out_dir/file`` and log them; returns the path."""
    text = "".join(r.table() for r in reports)
    path = os.path.join(out_dir, file)
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    for r in reports:
        logger.info("%s <- %s: %d loaded, %d re-initialised (%s), %d unused file keys; table in %s", r.network,
                    r.source, len(r.loaded), len(r.reinitialised), ", ".join(r.reinitialised[:4]) or "none",
                    len(r.unused), path)
    print(text, end="")  # noqa: T201 - the table is part of the run's console output
    return path
