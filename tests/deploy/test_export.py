"""Export: static program + Paddle Inference parity for every model family, ONNX parity, two-network and EMA
exports, softmax head, the PaddleServing package (parsed with protobuf text_format) and every input check."""

import json
import os

import numpy as np
import paddle
import pytest
import yaml
from _export_runs import CONFIG, FAST, RUNS, exported, trained_run
from google.protobuf import text_format

from robust_paddle import cli
from robust_paddle import config as C
from robust_paddle.deploy import export as export_mod
from robust_paddle.deploy.export import ParityError, check_formats
from robust_paddle.deploy.predictor import PaddlePredictor, load_model_info
from robust_paddle.deploy.serving_config import (
    SERVING_DTYPES,
    file_descriptor,
    message_classes,
    proto_path,
    proto_source,
    read_model_config,
)
from robust_paddle.ops import softmax
from robust_paddle.pipeline.build import load_run
from robust_paddle.pipeline.commands import export_command

FAMILIES = ["mlp", "small_cnn", "resnet18_cifar", "preact_resnet18", "vision_resnet18"]
ONNX_FAMILIES = {"mlp", "small_cnn", "resnet18_cifar"}


def eval_logits(cfg, ckpt, split="test"):
    """Logits of the evaluation path (trainer.predict_logits over the split's loader), in dataset order."""
    run = load_run(cfg, ckpt)
    logits, idx = run.trainer.predict_logits(run.loaders[split])
    ds = run.loaders[split].dataset
    x = np.stack([ds[int(i)][0] for i in idx])
    return run, logits, x


@pytest.mark.parametrize("family", FAMILIES)
def test_export_parity_every_family(tmp_path_factory, family):
    formats = ("paddle", "onnx") if family in ONNX_FAMILIES else ("paddle",)
    cfg, out, report = exported(tmp_path_factory, family, formats=formats)
    assert report["passed"] is True
    checks = {"paddle_program", "paddle_optimized"} | ({"onnx"} if "onnx" in formats else set())
    assert set(report["parity"]) == checks
    assert report["parity"]["paddle_program"]["max_abs_diff"] <= cfg.export.parity_atol
    assert report["parity"]["paddle_program"]["batch_sizes"] == [16, 1]
    with open(os.path.join(out, "export_report.json"), encoding="utf-8") as fh:
        assert json.load(fh)["model_version"] == report["model_version"]

    # independent check: the exported program reproduces the evaluation logits of the whole test split
    _, ckpt = trained_run(tmp_path_factory, family)
    run, logits, x = eval_logits(cfg, ckpt)
    info = load_model_info(out)
    pred = PaddlePredictor(info.prefix, optimized=False)
    assert np.abs(pred(x) - logits).max() <= 1e-5
    assert info.input_shape == tuple(run.data.input_shape) and info.class_names == tuple(run.data.class_names)
    assert info.mean == tuple(run.data.mean) and info.std == tuple(run.data.std)
    assert info.source["epoch"] == (3 if family == "small_cnn" else 1)
    assert not info.softmax and info.source["network"] == "net" and info.source["ema"] is False
    # the batch dimension is dynamic
    assert pred(x[:3]).shape == (3, info.num_classes) and pred(x[:1]).shape == (1, info.num_classes)


def test_inference_yml_fields(tmp_path_factory):
    cfg, out, report = exported(tmp_path_factory, "small_cnn")
    with open(os.path.join(out, "inference.yml"), encoding="utf-8") as fh:
        meta = yaml.safe_load(fh)
    assert meta["input"] == {"name": "x", "shape": [1, 8, 8], "dtype": "float32", "kind": "image", "batch": "dynamic"}
    assert meta["output"]["softmax"] is False and meta["output"]["kind"] == "logits" and meta["output"]["shape"] == [10]
    assert meta["preprocess"]["channels"] == 1 and meta["preprocess"]["size"] == [8, 8]
    assert meta["preprocess"]["pixel_scale"]["8bit"] == pytest.approx(1 / 255)
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["model_version"] == report["model_version"] and len(meta["model_version"]) == 12
    assert meta["source"]["checkpoint"].endswith("latest.pdckpt") and meta["source"]["model"] == "small_cnn"
    assert os.path.isfile(os.path.join(out, meta["model_file"]))
    assert os.path.isfile(os.path.join(out, meta["params_file"]))


def test_onnx_parity_against_onnxruntime(tmp_path_factory):
    from robust_paddle.deploy.predictor import OnnxPredictor

    cfg, out, report = exported(tmp_path_factory, "resnet18_cifar", formats=("paddle", "onnx"))
    onnx = report["parity"]["onnx"]
    assert onnx["passed"] and onnx["batch_sizes"] == [16, 1]
    _, ckpt = trained_run(tmp_path_factory, "resnet18_cifar")
    _, logits, x = eval_logits(cfg, ckpt)
    sess = OnnxPredictor(os.path.join(out, "inference.onnx"))
    assert sess.input_shape[1:] == [1, 8, 8] and not isinstance(sess.input_shape[0], int)  # dynamic batch
    np.testing.assert_allclose(sess(x), logits, atol=cfg.export.parity_atol, rtol=cfg.export.parity_rtol)


@pytest.mark.parametrize("network", ["ensemble", "net2"])
def test_two_network_exports(tmp_path_factory, network):
    cfg, out, report = exported(tmp_path_factory, "co_teaching", tag=f"-{network}",
                                overrides=(f"export.network={network}",))
    assert report["passed"] and report["source"]["network"] == network
    _, ckpt = trained_run(tmp_path_factory, "co_teaching")
    run = load_run(cfg, ckpt)
    run.method.eval()
    _, logits, x = eval_logits(cfg, ckpt)
    with paddle.no_grad():
        n1 = run.method.networks["net1"](paddle.to_tensor(x)).numpy()
        n2 = run.method.networks["net2"](paddle.to_tensor(x)).numpy()
    got = PaddlePredictor(os.path.join(out, "inference"), optimized=False)(x)
    if network == "ensemble":
        np.testing.assert_allclose(got, (n1 + n2) / 2, atol=1e-5)
        np.testing.assert_allclose(got, logits, atol=1e-5)  # method.predict averages the two networks too
    else:
        np.testing.assert_allclose(got, n2, atol=1e-5)
        assert np.abs(n1 - n2).max() > 1e-3  # the two networks differ, so the choice matters


def test_unknown_network_is_rejected(tmp_path_factory, tmp_path):
    cfg, ckpt = trained_run(tmp_path_factory, "co_teaching")
    bad = C.with_values(cfg, {"export.network": "net3"})
    with pytest.raises(ValueError, match="'net3' is not a network of this method; choose one of: net1, net2, ensemble"):
        export_command(bad, ckpt, out_dir=str(tmp_path / "x"))


def test_ema_export_uses_the_shadow_weights(tmp_path_factory, tmp_path):
    cfg, out, report = exported(tmp_path_factory, "ema", overrides=("export.use_ema=true",))
    assert report["passed"] and report["source"]["ema"] is True
    _, ckpt = trained_run(tmp_path_factory, "ema")
    from robust_paddle.engine.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt)
    run = load_run(cfg, ckpt)
    _, _, x = eval_logits(cfg, ckpt)
    net = run.method.networks["net"]
    net.eval()
    with paddle.no_grad():
        raw = net(paddle.to_tensor(x)).numpy()
        net.set_state_dict(state["hooks"]["ema"]["shadow"]["net"])
        ema = net(paddle.to_tensor(x)).numpy()
    got = PaddlePredictor(os.path.join(out, "inference"), optimized=False)(x)
    np.testing.assert_allclose(got, ema, atol=1e-5)
    assert np.abs(got - raw).max() > 1e-4

    # the run evaluated with its EMA weights (train.ema.eval), so export picks them without being asked
    _, implicit_out, implicit = exported(tmp_path_factory, "ema", tag="-implicit")
    assert implicit["source"]["ema"] is True and implicit["model_version"] == report["model_version"]

    # a checkpoint without EMA weights: a clear error naming the fix
    plain_cfg, plain_ckpt = trained_run(tmp_path_factory, "mlp")
    with pytest.raises(ValueError, match="holds no EMA weights; train with train.ema.enabled=true"):
        export_command(C.with_values(plain_cfg, {"export.use_ema": True}), plain_ckpt, out_dir=str(tmp_path / "e"))


def test_softmax_head_outputs_probabilities(tmp_path_factory):
    cfg, out, report = exported(tmp_path_factory, "mlp", tag="-softmax", overrides=("export.softmax=true",))
    assert report["passed"] and report["softmax"] is True
    _, ckpt = trained_run(tmp_path_factory, "mlp")
    _, logits, x = eval_logits(cfg, ckpt)
    info = load_model_info(out)
    assert info.softmax
    probs = PaddlePredictor(info.prefix)(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, softmax(logits), atol=1e-6)


def test_serving_package_parses_with_the_schema(tmp_path_factory):
    cfg, out, report = exported(tmp_path_factory, "small_cnn", formats=("paddle", "serving"))
    assert report["parity"]["serving"]["passed"] and report["parity"]["serving"]["max_abs_diff"] == 0.0
    server, client = os.path.join(out, "serving_server"), os.path.join(out, "serving_client")
    assert sorted(os.listdir(server)) == ["inference.pdiparams", "inference.pdmodel", "serving_server_conf.prototxt",
                                          "serving_server_conf.stream.prototxt"]
    assert sorted(os.listdir(client)) == ["serving_client_conf.prototxt", "serving_client_conf.stream.prototxt"]
    # the weights are the exported ones; the program is the exported .pdmodel (Paddle 2.x) or, where Paddle 3.x
    # exported a PIR .json, the same network saved as the legacy .pdmodel program Serving 0.9 reads
    with open(os.path.join(out, "inference.pdiparams"), "rb") as a, open(os.path.join(server, "inference.pdiparams"), "rb") as b:
        assert a.read() == b.read()
    if os.path.exists(os.path.join(out, "inference.pdmodel")):
        with open(os.path.join(out, "inference.pdmodel"), "rb") as a, open(os.path.join(server, "inference.pdmodel"), "rb") as b:
            assert a.read() == b.read()
    else:
        assert os.path.exists(os.path.join(out, "inference.json"))
    served = PaddlePredictor(os.path.join(server, "inference"), optimized=False)
    classes = message_classes()
    for folder, conf in ((server, "serving_server_conf"), (client, "serving_client_conf")):
        with open(os.path.join(folder, conf + ".prototxt"), encoding="utf-8") as fh:
            msg = text_format.Parse(fh.read(), classes["GeneralModelConfig"]())
        assert len(msg.feed_var) == 1 and len(msg.fetch_var) == 1 and not msg.HasField("graph")
        feed, fetch = msg.feed_var[0], msg.fetch_var[0]
        assert (feed.name, feed.alias_name, feed.is_lod_tensor, feed.feed_type, list(feed.shape)) == \
            ("x", "x", False, SERVING_DTYPES["float32"], [1, 8, 8])
        assert (fetch.name, fetch.alias_name, fetch.is_lod_tensor, fetch.fetch_type, list(fetch.shape)) == \
            (served.output_name, "logits", False, 1, [10])
        stream = classes["GeneralModelConfig"]()
        with open(os.path.join(folder, conf + ".stream.prototxt"), "rb") as fh:
            stream.ParseFromString(fh.read())
        assert stream == msg
        parsed = read_model_config(os.path.join(folder, conf + ".prototxt"))  # its own pool: compare encodings
        assert parsed.SerializeToString() == msg.SerializeToString()


def test_proto_mirror_matches_serving_schema():
    with open(proto_path(), encoding="utf-8") as fh:
        assert fh.read() == proto_source()  # the checked-in .proto is rendered from the code's descriptor
    fdp = file_descriptor()
    assert fdp.package == "baidu.paddle_serving.configure" and fdp.syntax == "proto2"
    fields = {m.name: {f.name: f.number for f in m.field} for m in fdp.message_type}
    assert fields["GeneralModelConfig"] == {"graph": 1, "feed_var": 2, "fetch_var": 3}
    assert fields["FeedVar"] == {"name": 1, "alias_name": 2, "is_lod_tensor": 3, "feed_type": 4, "shape": 5}
    assert fields["FetchVar"] == {"name": 1, "alias_name": 2, "is_lod_tensor": 3, "fetch_type": 4, "shape": 5}
    # text written by Serving itself (paddle_serving_client.convert output) parses
    msg = text_format.Parse('feed_var { name: "x" alias_name: "image" is_lod_tensor: false feed_type: 1 shape: 3 }\n'
                            'fetch_var { name: "save_infer_model/scale_0.tmp_1" alias_name: "prediction" '
                            'is_lod_tensor: true fetch_type: 1 shape: -1 }', message_classes()["GeneralModelConfig"]())
    assert msg.fetch_var[0].is_lod_tensor and list(msg.fetch_var[0].shape) == [-1]


def test_read_model_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Serving config not found"):
        read_model_config(str(tmp_path / "none.prototxt"))
    bad = tmp_path / "bad.prototxt"
    bad.write_text("feed_var { nme: 1 }")
    with pytest.raises(ValueError, match="not a GeneralModelConfig text proto"):
        read_model_config(str(bad))


def test_parity_failure_raises_and_cli_exits_nonzero(tmp_path_factory, tmp_path, monkeypatch, capsys):
    cfg, ckpt = trained_run(tmp_path_factory, "mlp")

    class Skewed(export_mod.OnnxPredictor):
        def __call__(self, x):
            return super().__call__(x) + 1e-3

    monkeypatch.setattr(export_mod, "OnnxPredictor", Skewed)
    out = tmp_path / "skewed"
    with pytest.raises(ParityError, match=r"export parity failed for onnx \(onnx: max\|diff\| 0\.001"):
        export_command(cfg, ckpt, out_dir=str(out), formats=["onnx"])
    with open(out / "export_report.json", encoding="utf-8") as fh:
        report = json.load(fh)
    assert report["passed"] is False and report["parity"]["onnx"]["passed"] is False
    assert report["parity"]["paddle_program"]["passed"] is True

    overrides = [a for o in FAST + RUNS["mlp"] + [f"output_dir={cfg.output_dir}"] for a in ("-o", o)]
    code = cli.main(["export", "-c", CONFIG, *overrides, "--checkpoint", ckpt, "--out", str(tmp_path / "cli"),
                     "--format", "onnx"])
    assert code == 2 and "export parity failed for onnx" in capsys.readouterr().err


def test_cli_export_prints_the_report(tmp_path_factory, tmp_path, capsys):
    cfg, ckpt = trained_run(tmp_path_factory, "mlp")
    overrides = [a for o in FAST + RUNS["mlp"] + [f"output_dir={cfg.output_dir}"] for a in ("-o", o)]
    out = tmp_path / "cli-ok"
    assert cli.main(["export", "-c", CONFIG, *overrides, "--checkpoint", os.path.dirname(os.path.dirname(ckpt)),
                     "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["passed"] and printed["formats"] == ["paddle"] and os.path.isfile(out / "inference.yml")
    # a second export into the same folder is refused
    code = cli.main(["export", "-c", CONFIG, *overrides, "--checkpoint", ckpt, "--out", str(out)])
    assert code == 2 and "already holds an export" in capsys.readouterr().err


def test_format_checks():
    assert check_formats(["serving"]) == ["paddle", "serving"]
    assert check_formats(["onnx", "paddle", "onnx"]) == ["paddle", "onnx"]
    with pytest.raises(ValueError, match="export format 'tflite' is not supported; choose from: paddle, onnx, serving"):
        check_formats(["paddle", "tflite"])
    with pytest.raises(ValueError, match="must be a non-empty list"):
        check_formats([])
    with pytest.raises(ValueError, match="must be a non-empty list"):
        check_formats("paddle")


def test_load_model_info_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_model_info(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="has no inference.yml"):
        load_model_info(str(tmp_path))
    (tmp_path / "inference.yml").write_text("format: other\n")
    with pytest.raises(ValueError, match="'format' must be 'robust_paddle.inference/1'"):
        load_model_info(str(tmp_path))
    (tmp_path / "inference.yml").write_text("format: robust_paddle.inference/1\ninput: {}\n")
    with pytest.raises(ValueError, match="missing or malformed field"):
        load_model_info(str(tmp_path))
