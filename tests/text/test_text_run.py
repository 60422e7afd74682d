"""A text run end to end: train with injected noise -> exact resume -> report with texts -> export (Paddle, ONNX,
Serving; parity) -> serve raw strings with the same predictions as evaluation."""

import csv
import json
import re
import shutil

import numpy as np
import pytest
from text_helpers import make_texts, text_config, write_corpus

from robust_paddle import config as C
from robust_paddle.pipeline import build as build_mod
from robust_paddle.pipeline import run as run_mod


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("textrun")
    path = write_corpus(str(d), 160)
    cfg = C.from_dict(text_config(path, str(d / "run"), **{
        "data.noise": {"kind": "symmetric", "rate": 0.2}, "data.text.window_length": 12,
        "data.text.window_stride": 6, "train.epochs": 3, "train.checkpoint_every": 1,
        "data.text.clean_label_column": "clean"}))
    summary = run_mod.train(cfg)
    return {"dir": d / "run", "cfg": cfg, "summary": summary, "corpus": path}


def history(path):
    return json.loads((path / "metrics.json").read_text())["history"]


def test_resume_is_exact(text_run, tmp_path):
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copy(text_run["dir"] / "config.yaml", part / "config.yaml")
    shutil.copy(text_run["dir"] / "tokenizer.json", part / "tokenizer.json")
    shutil.copy(text_run["dir"] / "checkpoints" / "epoch_001.pdckpt", part / "checkpoints" / "latest.pdckpt")
    run_mod.train(C.with_values(text_run["cfg"], {"output_dir": str(part)}), resume=str(part))
    assert history(part) == history(text_run["dir"])


def test_report_shows_shortened_text_beside_labels(text_run):
    with open(text_run["dir"] / "label_issues.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert "text" in rows[0] and {"given_name", "suggested_name", "true_label"} <= set(rows[0])
    texts, _ = make_texts(160)
    assert all(r["text"] in texts or r["text"].endswith("...") for r in rows)
    assert all(len(r["text"]) <= 80 for r in rows)
    flagged = [r for r in rows if r["is_issue"] == "1"]
    assert flagged and np.mean([r["given_label"] != r["true_label"] for r in flagged]) > 0.5


def test_export_parity_and_serve_texts_equal_eval(text_run, tmp_path):
    requests = pytest.importorskip("requests")
    from robust_paddle.deploy.predictor import load_model_info
    from robust_paddle.deploy.serve import ServerHandle, close_app, create_app
    from robust_paddle.ops import softmax
    from robust_paddle.pipeline.commands import export_command

    cfg = C.load(str(text_run["dir"] / "config.yaml"))
    ckpt = str(text_run["dir"] / "checkpoints" / "best.pdckpt")
    out = tmp_path / "export"
    report = export_command(cfg, ckpt, out_dir=str(out), formats=["paddle", "onnx", "serving"])
    assert report["passed"] and set(report["parity"]) == {"paddle_program", "paddle_optimized", "onnx", "serving"}
    info = load_model_info(str(out))
    assert info.kind == "text" and info.input_dtype == "int64" and info.text["window_length"] == 12
    conf = (out / "serving_server" / "serving_server_conf.prototxt").read_text()
    assert "feed_type: 0" in conf  # int64 token ids

    run = build_mod.load_run(cfg, ckpt)
    test = run.data.test
    logits, idx = run.trainer.predict_logits(run.loaders["test"])
    expected = softmax(logits)
    texts = [str(test.texts[i]) for i in idx]
    app = create_app(str(out), max_batch_size=64)
    handle = ServerHandle(app, port=0, threads=2).start()
    try:
        r = requests.post(handle.url + "/predict", json={"texts": texts[:20], "top_k": 2}, timeout=60)
        assert r.status_code == 200, r.text
        got = np.zeros((20, 2))
        for i, p in enumerate(r.json()["predictions"]):
            for t in p["top_k"]:
                got[i, t["class_id"]] = t["probability"]
        np.testing.assert_allclose(got, expected[:20], atol=1e-5)
        for body, message in (({"texts": ["好", ""]}, "texts[1] is empty"),
                              ({"texts": [3]}, "texts[0] must be a string"),
                              ({"texts": "好"}, "'texts' must be a non-empty list"),
                              ({"inputs": [[-1] * 24]}, "token ids: integers >= 0")):
            bad = requests.post(handle.url + "/predict", json=body, timeout=60)
            assert bad.status_code == 400 and message in bad.json()["error"]
    finally:
        handle.close()
        close_app(app)

    # the Python API reads raw texts with the same checks and tokenisation as serve
    from robust_paddle import load_predictor
    from robust_paddle.errors import DataError

    predictor = load_predictor(str(out))
    np.testing.assert_allclose(predictor.predict_texts(texts[:20]), expected[:20], atol=1e-5)
    for bad, message in ((["好", ""], "texts[1] is empty"), ([3], "texts[0] must be a string"),
                         ([], "'texts' must be a non-empty list")):
        with pytest.raises(DataError, match=re.escape(message)):
            predictor.predict_texts(bad)


@pytest.mark.parametrize("model,params", [
    ("bigru_attention", {"embed_dim": 16, "hidden_size": 8, "attention_dim": 8}),
    ("bilstm_attention", {"embed_dim": 16, "hidden_size": 8, "attention_dim": 8}),
    ("transformer", {"embed_dim": 16, "num_heads": 2, "ffn_dim": 16, "num_layers": 1}),
])
def test_rnn_and_transformer_export_to_serving_with_parity(tmp_path, model, params):
    """The PaddleServing package holds a legacy (pre-PIR) program; on Paddle 3.x it is traced a second time in
    _compat.legacy_program_guard, which must cope with attention matmuls, tanh and the RNN's dropout state."""
    from robust_paddle.pipeline.commands import export_command

    path = write_corpus(str(tmp_path), 60)
    cfg = C.from_dict(text_config(path, str(tmp_path / "run"), **{
        "model.name": model, "model.params": params, "train.epochs": 1, "data.text.window_length": 12,
        "data.text.window_stride": 12}))
    run_mod.train(cfg)
    out = tmp_path / "export"
    report = export_command(cfg, str(tmp_path / "run" / "checkpoints" / "best.pdckpt"), out_dir=str(out),
                            formats=["paddle", "serving"])
    assert report["passed"] and report["parity"]["serving"]["max_abs_diff"] <= 1e-5
    assert (out / "serving_server" / "inference.pdmodel").exists()


def test_text_demo_prints_the_table(tmp_path, capsys):
    import yaml

    from robust_paddle.pipeline.demo import TEXT_DEMO_ROWS, run_demo

    path = write_corpus(str(tmp_path), 120)
    cfg = tmp_path / "demo.yaml"
    data = text_config(path, str(tmp_path / "unused"), **{"data.noise": {"kind": "symmetric", "rate": 0.4}})
    cfg.write_text(yaml.safe_dump(data), encoding="utf-8")
    rows = run_demo(config_path=str(cfg), task="text", methods=["clean_oracle", "ce"], jobs=1,
                    out_dir=str(tmp_path / "demo"))
    out = capsys.readouterr().out
    assert [r["method"] for r in rows] == ["clean_oracle", "ce"]
    assert "text, label noise symmetric 40%" in out and "clean_oracle" in out
    assert {n for n, _ in TEXT_DEMO_ROWS} >= {"ce", "gce", "co_teaching", "dividemix", "gmm_correction"}
    with pytest.raises(ValueError, match="--task: 'audio' is not a demo"):
        run_demo(task="audio")


def test_checkpoint_records_the_tokenizer_and_eval_refuses_another(text_run, tmp_path):
    from robust_paddle.engine.checkpoint import load_checkpoint
    from robust_paddle.errors import CheckpointError

    sig = load_checkpoint(str(text_run["dir"]))["meta"]["signature"]["tokenizer"]
    assert sig["lowercase"] is True and len(sig["vocab_sha256"]) == 16 and sig["vocab_size"] > 4
    other = tmp_path / "copy"  # no tokenizer.json next to it: eval refits one from data.text
    (other / "checkpoints").mkdir(parents=True)
    shutil.copy(text_run["dir"] / "checkpoints" / "latest.pdckpt", other / "checkpoints" / "latest.pdckpt")
    cfg = C.with_values(text_run["cfg"], {"output_dir": str(other), "data.text.lowercase": False})
    with pytest.raises(CheckpointError, match=r'does not match the config -- .*tokenizer: checkpoint \{.*"lowercase": '
                                              r'true.*config \{.*"lowercase": false'):
        run_mod.evaluate(cfg, str(other))


@pytest.mark.parametrize("stage", [{"name": "prune", "ratio": 0.3}, {"name": "qat"}])
def test_compress_refuses_a_text_run_in_one_line_and_writes_nothing(text_run, tmp_path, stage):
    from robust_paddle.errors import ConfigError
    from robust_paddle.pipeline.commands import compress_command

    cfg = C.with_values(text_run["cfg"], {"slim.stages": [stage]})
    out = tmp_path / "compressed"
    with pytest.raises(ConfigError, match=r"supports image and tabular runs; this is a text run .*robust-paddle "
                                          r"export"):
        compress_command(cfg, str(text_run["dir"]), out_dir=str(out), print_table=False)
    assert not out.exists()
