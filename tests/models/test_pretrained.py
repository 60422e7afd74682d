"""model.pretrained: partial loading tables, head re-initialisation, unmatched files, weights-only reading."""

import os
import pickle

import numpy as np
import paddle
import paddle.vision.models as pvm
import pytest

from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.models import build_model
from robust_paddle.models.pretrained import (
    head_keys,
    load_pretrained,
    save_reports,
    split_parameters,
    zoo_weights,
)


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory):
    """A paddle.vision zoo-format file: paddle.save of resnet18's state dict with its 1000-class head."""
    paddle.seed(1)
    net = pvm.resnet18(num_classes=1000)
    state = net.state_dict()
    path = str(tmp_path_factory.mktemp("zoo") / "resnet18.pdparams")
    paddle.save(state, path)
    return path, {k: v.numpy() for k, v in state.items()}


def test_zoo_file_loads_the_backbone_and_reinitialises_the_head(zoo_file, tmp_path):
    path, ref = zoo_file
    paddle.seed(2)
    net = build_model("resnet18", num_classes=10, input_shape=(3, 32, 32))
    fresh_head = net.classifier.weight.numpy().copy()
    report = load_pretrained(net, path)
    assert sorted(report.reinitialised) == ["classifier.bias", "classifier.weight"]
    rows = {k: (s, f, d) for k, s, f, d in report.rows}
    assert rows["classifier.weight"] == ("reinit", "fc.weight", "head shape [512, 1000] -> [512, 10]")
    assert rows["backbone.conv1.weight"] == ("loaded", "conv1.weight", "")
    assert len(report.loaded) == len(ref) - 2 and report.unused == []
    state = net.state_dict()
    for key in ("backbone.conv1.weight", "backbone.layer4.1.bn2._mean", "backbone.layer2.0.downsample.0.weight"):
        np.testing.assert_array_equal(state[key].numpy(), ref[key[len("backbone."):]])
    np.testing.assert_array_equal(net.classifier.weight.numpy(), fresh_head)  # the new head keeps its init
    table = open(save_reports([report], str(tmp_path)), encoding="utf-8").read()
    assert "reinit   classifier.weight" in table
    assert f"{len(ref) - 2} loaded, 2 re-initialised, 0 unused" in table


def test_partial_file_lists_missing_and_unused_keys(zoo_file, tmp_path):
    path, ref = zoo_file
    partial = {k: v for k, v in ref.items() if not k.startswith("layer4.")}
    partial["projection.weight"] = np.zeros((4, 4), np.float32)
    p = str(tmp_path / "partial.pdparams")
    with open(p, "wb") as fh:
        pickle.dump(partial, fh, protocol=2)  # a plain pickled dict of numpy arrays (PaddleClas style)
    net = build_model("resnet18", num_classes=10, input_shape=(3, 32, 32))
    report = load_pretrained(net, p)
    missing = [k for k, s, f, d in report.rows if d == "not in the file"]
    assert missing and all(k.startswith("backbone.layer4.") for k in missing)
    assert report.unused == ["projection.weight"]


def test_robust_paddle_network_keys_load_one_to_one():
    paddle.seed(3)
    src = build_model("small_cnn", num_classes=10, input_shape=(1, 8, 8))
    dst = build_model("small_cnn", num_classes=4, input_shape=(1, 8, 8))
    weights = {k: v.numpy() for k, v in src.state_dict().items()}
    from robust_paddle.models.pretrained import match_state_dict

    state, report = match_state_dict(dst, weights, source="mem")
    assert set(report.reinitialised) == head_keys(dst) and report.unused == []
    assert all(np.array_equal(state[k], weights[k]) for k in state)


def test_unmatched_file_is_an_error(tmp_path):
    p = str(tmp_path / "other.pdparams")
    paddle.save({"encoder.embed.weight": paddle.zeros([3, 4])}, p)
    net = build_model("small_cnn", num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(CheckpointError, match="none of its 1 keys match network 'net' .*encoder.embed.weight"):
        load_pretrained(net, p)


def test_backbone_shape_mismatch_is_an_error(zoo_file):
    path, _ = zoo_file
    wide = build_model("wide_resnet50_2", num_classes=10, input_shape=(3, 32, 32))
    with pytest.raises(CheckpointError, match=r"backbone weight\(s\) have another shape than network 'net' "
                                              r"\(VisionClassifier\): backbone.layer1.0.conv1.weight \[128, 64, 1, 1\]"):
        load_pretrained(wide, path)
    deeper = build_model("resnet34", num_classes=10, input_shape=(3, 32, 32))
    report = load_pretrained(deeper, path)  # resnet34 <- resnet18: the blocks resnet18 lacks keep their init
    assert "backbone.layer1.2.conv1.weight" in report.reinitialised and report.unused == []


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = str(tmp_path / "evil.pdparams")
    with open(p, "wb") as fh:
        pickle.dump({"fc.weight": Evil()}, fh)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_pretrained(build_model("small_cnn", num_classes=10, input_shape=(1, 8, 8)), p)
    assert not marker.exists()


def test_split_parameters_and_zoo_errors():
    net = build_model("small_cnn", num_classes=10, input_shape=(1, 8, 8))
    backbone, head = split_parameters(net)
    assert {id(p) for p in head} == {id(p) for p in net.classifier.parameters()}
    assert len(backbone) + len(head) == len(net.parameters())
    with pytest.raises(ConfigError, match="paddle.vision has no pretrained weights for model 'small_cnn'"):
        zoo_weights("small_cnn")
