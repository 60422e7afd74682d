"""The ``ernie`` text model on a tiny randomly initialised ERNIE saved with PaddleNLP's ``save_pretrained``:
weights read safely and equal to PaddleNLP's, features equal to ``ErnieModel``'s, the tokenizer equal to
``ErnieTokenizer``, then a run that trains, resumes exactly, evaluates, exports with parity and predicts raw
strings like evaluation. Skipped where PaddleNLP does not import (``pip install -e .[ernie]``)."""

import json
import pickle
import shutil

import numpy as np
import paddle
import pytest
from text_helpers import FILL, NEG, POS, make_texts, text_config, write_corpus

from robust_paddle import config as C
from robust_paddle.errors import CheckpointError, ConfigError

transformers = pytest.importorskip("paddlenlp.transformers")

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]


def tiny_ernie(folder, *, safetensors=False, seed=0):
    """A 2-layer, hidden-32 ERNIE over the characters of the test corpus, saved with PaddleNLP (with task-type
    embeddings, as the ERNIE 3.0 releases have)."""
    chars = sorted({c for w in POS + NEG + FILL for c in w})
    vocab = SPECIALS + chars + ["hello", "world", "##s", "!", "?", ",", "."] + list("abcdefghijklmnopqrstuvwxyz")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = transformers.ErnieTokenizer(str(folder / "vocab.txt"))
    tok.save_pretrained(str(folder))
    config = transformers.ErnieConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                      type_vocab_size=2, pad_token_id=0, use_task_id=True, task_id=1)
    paddle.seed(seed)
    model = transformers.ErnieModel(config)
    model.eval()
    if safetensors:
        model.save_pretrained(str(folder), safe_serialization=True)
    else:
        model.save_pretrained(str(folder))
    return str(folder), model, tok


@pytest.fixture(scope="module")
def ernie_dir(tmp_path_factory):
    return tiny_ernie(tmp_path_factory.mktemp("ernie") / "tiny")


def build(path, length=24, **kw):
    from robust_paddle.data.tokenize import ernie_tokenizer
    from robust_paddle.models import build_model

    tok = ernie_tokenizer(path, max_length=length)
    net = build_model("ernie", num_classes=3, input_shape=(length,), vocab_size=tok.vocab_size, pad_id=tok.pad_id,
                      vocab=list(tok.vocab), path=path, **kw)
    return net, tok


@pytest.mark.parametrize("safetensors", [False, True])
def test_weights_and_features_equal_paddlenlp(tmp_path, safetensors):
    import os

    path, model, _ = tiny_ernie(tmp_path / "m", safetensors=safetensors)
    assert os.path.isfile(os.path.join(path, "model.safetensors" if safetensors else "model_state.pdparams"))
    net, tok = build(path)
    net.eval()
    ref = model.state_dict()
    for k, v in net.ernie.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k].numpy())
    texts, _ = make_texts(6)
    ids = paddle.to_tensor(tok.encode_batch(texts))
    seq, pooled = model(input_ids=ids)  # PaddleNLP's own mask (pad id) and positions
    np.testing.assert_allclose(net.forward_features(ids).numpy(), pooled.numpy(), atol=1e-5)
    mean_net, _ = build(path, pooling="mean")
    mean_net.eval()
    m = (ids.numpy() != 0)[:, :, None]
    want = (seq.numpy() * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(mean_net.forward_features(ids).numpy(), want, atol=1e-5)
    emb, head = net.embedding_split(ids)
    np.testing.assert_allclose(head(emb).numpy(), net(ids).numpy(), atol=1e-6)


@pytest.mark.parametrize("safetensors", [False, True])
def test_sharded_weights_load(tmp_path, ernie_dir, safetensors):
    path = tmp_path / "sharded"
    shutil.copytree(ernie_dir[0], path)
    (path / "model_state.pdparams").unlink()
    ernie_dir[1].save_pretrained(str(path), max_shard_size="20KB", safe_serialization=safetensors)
    index = path / ("model.safetensors.index.json" if safetensors else "model_state.pdparams.index.json")
    shards = set(json.loads(index.read_text())["weight_map"].values())
    assert len(shards) > 1 and not (path / "model_state.pdparams").exists()
    net, _ = build(str(path))
    for k, v in net.ernie.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ernie_dir[1].state_dict()[k].numpy())
    (path / sorted(shards)[0]).unlink()
    with pytest.raises(ConfigError, match=r"model\.params\.path: .*index\.json names missing shard\(s\): "):
        build(str(path))
    index.write_text(json.dumps({"weight_map": {"a": "../evil.pdparams"}}))
    with pytest.raises(ConfigError, match=r"names shard\(s\) outside its directory: \.\./evil\.pdparams"):
        build(str(path))


def test_a_task_model_directory_loads_its_backbone(tmp_path, ernie_dir):
    """A directory saved from ``ErnieForSequenceClassification`` (keys ``ernie.*`` + its own classifier): the
    backbone is loaded, the task head is not (the classifier is new, for the run's classes)."""
    path = tmp_path / "task"
    shutil.copytree(ernie_dir[0], path)
    config = transformers.ErnieConfig.from_pretrained(str(path))
    config.num_labels = 5
    task = transformers.ErnieForSequenceClassification(config)
    task.ernie.set_state_dict(ernie_dir[1].state_dict())
    (path / "model_state.pdparams").unlink()
    task.save_pretrained(str(path))
    assert any(k.startswith("ernie.") for k in paddle.load(str(path / "model_state.pdparams")))
    net, _ = build(str(path))
    for k, v in net.ernie.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ernie_dir[1].state_dict()[k].numpy())
    assert net.classifier.weight.shape == [32, 3]


def test_tokenizer_equals_paddlenlp_ernie_tokenizer(ernie_dir):
    path, model, pnlp = ernie_dir
    from robust_paddle.data.tokenize import ernie_tokenizer

    tok = ernie_tokenizer(path, max_length=16)
    texts = make_texts(20)[0] + ["Hello worlds! 很好,", "HÉLLO\twörld?  ", "质量\u3000很差。。", "x" * 130,
                                 "很好 [SEP] 很差", "", "abc\x00def"]
    for t in texts:
        want = pnlp(t, max_length=16, truncation=True, padding="max_length")["input_ids"]
        assert tok.encode(t).tolist() == want, t
    a, b = "很好", "质量不错"
    enc = pnlp(a, b, max_length=16, padding="max_length")
    ids = tok.encode(a, b)
    assert ids.tolist() == enc["input_ids"]
    net, _ = build(path, length=16)
    np.testing.assert_array_equal(net.token_types(paddle.to_tensor(ids[None]))[0].numpy()[:8],
                                  enc["token_type_ids"][:8])


def test_a_pickle_that_would_execute_code_is_refused(tmp_path, ernie_dir):
    path = tmp_path / "evil"
    shutil.copytree(ernie_dir[0], path)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "model_state.pdparams").write_bytes(pickle.dumps({"embeddings.word_embeddings.weight": Evil()}))
    with pytest.raises(CheckpointError):
        build(str(path))
    assert not marker.exists()


def test_weights_of_another_config_are_one_error(tmp_path, ernie_dir):
    path = tmp_path / "other"
    shutil.copytree(ernie_dir[0], path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model_state\.pdparams: does not fit model\.params\.path's "
                                              r"config\.json: 0 weight\(s\) missing \(\), 6 of another shape \(encoder\.layers\.0\.linear1\.weight "
                                              r"\[32, 48\] vs \[32, 64\]"):
        build(str(path))


def test_windows_average_cls_windows_and_freezing(ernie_dir):
    path = ernie_dir[0]
    net, tok = build(path, length=20)
    from robust_paddle.models.ernie import ErnieClassifier
    from robust_paddle.registry import MODELS

    assert MODELS.get("ernie") is ErnieClassifier
    win = ErnieClassifier(num_classes=3, input_shape=(20,), vocab_size=tok.vocab_size, vocab=list(tok.vocab),
                          path=path, window_length=8, window_stride=7, freeze_layers=1)
    win.set_state_dict(net.state_dict())
    net.eval()
    win.eval()
    assert win.starts == [0, 7, 12]  # over the 19 tokens after [CLS]: windows of 7, the last ends at 19
    ids = tok.encode_batch(["很好不错喜欢满意推荐快漂亮舒服东西质量价格快递", "很差"])
    got = win.forward_features(paddle.to_tensor(ids)).numpy()
    rows = [np.concatenate([ids[:, :1], ids[:, 1 + s:8 + s]], axis=1) for s in (0, 7, 12)]
    feats = [net.ernie(input_ids=paddle.to_tensor(r))[1].numpy() for r in rows]
    np.testing.assert_allclose(got[0], np.mean([f[0] for f in feats], axis=0), atol=1e-5)
    np.testing.assert_allclose(got[1], feats[0][1], atol=1e-5)  # the short text has one valid window
    frozen = {k for k, p in win.named_parameters() if p.stop_gradient}
    assert any(k.startswith("ernie.embeddings.") for k in frozen)
    assert any(k.startswith("ernie.encoder.layers.0.") for k in frozen)
    assert not any(k.startswith(("ernie.encoder.layers.1.", "classifier.")) for k in frozen)


@pytest.fixture(scope="module")
def ernie_run(tmp_path_factory, ernie_dir):
    from robust_paddle.pipeline import run as run_mod

    d = tmp_path_factory.mktemp("ernierun")
    corpus = write_corpus(str(d), 48)
    cfg = C.from_dict(text_config(corpus, str(d / "run"), **{
        "model.name": "ernie", "model.params": {"path": ernie_dir[0], "dropout": 0.1},
        "data.text.tokenizer": "ernie", "data.text.window_length": 12, "data.text.window_stride": 6,
        "data.noise": {"kind": "symmetric", "rate": 0.2}, "optimizer.lr": 0.001, "train.epochs": 2,
        "train.checkpoint_every": 1}))
    summary = run_mod.train(cfg)
    return {"dir": d / "run", "cfg": cfg, "summary": summary}


def test_run_trains_resumes_exactly_and_saves_the_tokenizer(ernie_run, tmp_path):
    from robust_paddle.data.tokenize import TextTokenizer
    from robust_paddle.pipeline import run as run_mod

    run = ernie_run["dir"]
    tok = TextTokenizer.load(str(run))
    assert tok.kind == "ernie" and tok.cls_token == "[CLS]" and tok.encode("很好")[0] == tok.cls_id
    hist = json.loads((run / "metrics.json").read_text())["history"]
    assert len(hist) == 2
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "config.yaml", part / "config.yaml")
    shutil.copy(run / "tokenizer.json", part / "tokenizer.json")
    shutil.copy(run / "checkpoints" / "epoch_001.pdckpt", part / "checkpoints" / "latest.pdckpt")
    run_mod.train(C.with_values(ernie_run["cfg"], {"output_dir": str(part)}), resume=str(part))
    assert json.loads((part / "metrics.json").read_text())["history"] == hist


def test_export_parity_and_predictor_on_raw_strings_equal_eval(ernie_run, tmp_path):
    from robust_paddle.api import load_predictor
    from robust_paddle.ops import softmax
    from robust_paddle.pipeline import build as build_mod
    from robust_paddle.pipeline import run as run_mod
    from robust_paddle.pipeline.commands import export_command

    cfg = C.load(str(ernie_run["dir"] / "config.yaml"))
    ckpt = str(ernie_run["dir"] / "checkpoints" / "best.pdckpt")
    metrics = run_mod.evaluate(cfg, ckpt)
    assert 0.0 <= metrics["test"]["acc"] <= 1.0
    formats = ["paddle", "serving"] + (["onnx"] if _has("paddle2onnx") and _has("onnxruntime") else [])
    out = tmp_path / "export"
    report = export_command(cfg, ckpt, out_dir=str(out), formats=formats)
    assert report["passed"] and {"paddle_program", "paddle_optimized", "serving"} <= set(report["parity"])
    run = build_mod.load_run(cfg, ckpt)
    logits, idx = run.trainer.predict_logits(run.loaders["test"])
    texts = [str(run.data.test.texts[i]) for i in idx]
    got = load_predictor(str(out)).predict_texts(texts)
    np.testing.assert_allclose(got, softmax(logits), atol=1e-5)
    assert (got.argmax(1) == logits.argmax(1)).all()


def test_robust_method_and_embedding_tricks_train(ernie_dir, tmp_path):
    from robust_paddle.pipeline import run as run_mod

    corpus = write_corpus(str(tmp_path), 40)
    base = {"model.name": "ernie", "model.params": {"path": ernie_dir[0], "pooling": "mean"},
            "data.text.tokenizer": "ernie", "train.epochs": 1, "optimizer.lr": 0.001}
    tricks = C.from_dict(text_config(corpus, str(tmp_path / "tricks"), **base, **{
        "method.name": "standard", "method.params": {"mixup_alpha": 0.4, "adversarial": "fgm",
                                                     "adv_target": "embedding", "rdrop_alpha": 1.0}}))
    co = C.from_dict(text_config(corpus, str(tmp_path / "co"), **base, **{
        "method": {"name": "co_teaching", "params": {"forget_rate": 0.2, "num_gradual": 1}}}))
    for cfg in (tricks, co):
        summary = run_mod.train(cfg)
        assert summary["epochs_run"] == 1 and np.isfinite(summary["final"]["test/acc"])


def _has(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_rows_longer_than_the_positions_or_another_vocabulary_are_one_error(ernie_dir):
    from robust_paddle.models import build_model

    path = ernie_dir[0]
    with pytest.raises(ConfigError, match=r"rows of 80 tokens exceed the model's max_position_embeddings \(64\)"):
        build(path, length=80)
    assert build(path, length=80, window_length=32)[0].window == 32  # windows of [CLS] + 31 tokens fit
    with pytest.raises(ConfigError, match=r"model\.params\.path: the run's tokenizer is not this model's vocabulary "
                                          r"\(3 vs \d+ tokens"):
        build_model("ernie", num_classes=2, input_shape=(24,), vocab_size=3, pad_id=0, vocab=["[PAD]", "a", "b"],
                    path=path)
