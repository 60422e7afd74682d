"""The ``ernie`` model and tokenizer without PaddleNLP: every bad setting is one clear error naming the key and
the files expected; a missing PaddleNLP names the extra. Runs everywhere (PaddleNLP absent or present)."""

import builtins
import json

import pytest
from text_helpers import text_config, write_corpus

from robust_paddle import config as C
from robust_paddle.data.ernie_files import model_dir_files, read_vocab, tokenizer_settings
from robust_paddle.data.tokenize import TextTokenizer, ernie_tokenizer
from robust_paddle.errors import ConfigError, MissingDependencyError
from robust_paddle.models import build_model

VOCAB = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "好", "不", "错", "差", "的", "hello", "world", "##s", "!"]


def fake_model_dir(path, *, weights=True, vocab=VOCAB, tokenizer_config=None):
    """A directory with the files of a PaddleNLP model (the weights file is a placeholder: never read here)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"vocab_size": len(vocab), "hidden_size": 8}), encoding="utf-8")
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if weights:
        (path / "model_state.pdparams").write_bytes(b"\x80\x04N.")
    if tokenizer_config is not None:
        (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    return str(path)


def build(path, **kw):
    return build_model("ernie", num_classes=2, input_shape=(16,), vocab_size=len(VOCAB), pad_id=0,
                       vocab=VOCAB, path=path, **kw)


def test_path_not_set_or_not_a_directory_is_one_line_naming_the_key_and_files(tmp_path):
    with pytest.raises(ConfigError, match=r"^model\.params\.path: not set; expected a local PaddleNLP model "
                                          r"directory .*config\.json, model\.safetensors or model_state\.pdparams \(or "
                                          r"its sharded \.index\.json \+ shards\), and vocab\.txt.*nothing is "
                                          r"downloaded$"):
        build("")
    for bad in ("ernie-3.0-medium-zh", str(tmp_path / "absent"), str(tmp_path / "file.txt")):
        (tmp_path / "file.txt").write_text("x")
        with pytest.raises(ConfigError, match=rf"^model\.params\.path: '{bad}' is not a local directory; expected "
                                              r"a local PaddleNLP model directory"):
            build(bad)


def test_missing_files_are_named(tmp_path):
    d = fake_model_dir(tmp_path / "m", weights=False)
    with pytest.raises(ConfigError, match=r"model\.params\.path: .*/m lacks model\.safetensors or "
                                          r"model_state\.pdparams; expected"):
        build(d)
    (tmp_path / "m" / "vocab.txt").unlink()
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"lacks config\.json, vocab\.txt, model\.safetensors or model_state"):
        build(d)
    assert "\n" not in str(pytest.raises(ConfigError, build, d).value)


def test_paddlenlp_missing_names_the_extra(tmp_path, monkeypatch):
    d = fake_model_dir(tmp_path / "m")
    real_import = builtins.__import__

    def no_paddlenlp(name, *args, **kw):
        if name == "paddlenlp" or name.startswith("paddlenlp."):
            raise ImportError("No module named 'paddlenlp'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_paddlenlp)
    with pytest.raises(MissingDependencyError, match=r"^model\.name ernie needs PaddleNLP, which does not import "
                                                     r"\(No module named 'paddlenlp'\); install it with: pip "
                                                     r"install -e \.\[ernie\]$"):
        build(d)


def test_model_params_are_checked_by_the_registry(tmp_path):
    d = fake_model_dir(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"model\.params\.pooling.*'max'.*cls, mean"):
        build(d, pooling="max")
    with pytest.raises(ConfigError, match=r"model\.params: unknown key\(s\) embed_dim for model 'ernie'"):
        build(d, embed_dim=8)


def test_ernie_tokenizer_rows_are_cls_text_sep_and_survive_a_save(tmp_path):
    pytest.importorskip("tokenizers")
    d = fake_model_dir(tmp_path / "m")
    tok = ernie_tokenizer(d, max_length=8)
    assert (tok.kind, tok.pad_id, tok.cls_id, tok.sep_id, tok.unk_id) == ("ernie", 0, 1, 2, 4)
    assert tok.tokens("好不错 Hello worlds!") == ["好", "不", "错", "hello", "world", "##s", "!"]
    assert tok.encode("好不错").tolist() == [1, 5, 6, 7, 2, 0, 0, 0]
    assert tok.encode("好 差", "不错").tolist() == [1, 5, 8, 2, 6, 7, 2, 0]  # [CLS] a [SEP] b [SEP]
    assert tok.encode("好不错的差好不错").tolist() == [1, 5, 6, 7, 9, 8, 5, 2]  # head: 6 tokens kept
    tail = ernie_tokenizer(d, max_length=6, truncation="head_tail", head_tokens=1)
    assert tail.encode("好不错的差").tolist() == [1, 5, 7, 9, 8, 2]  # 1 head + 3 tail tokens between [CLS], [SEP]
    assert tok.encode("好 [SEP] 差").tolist() == [1, 5, 4, 4, 4, 8, 2, 0]  # plain text, as in PaddleNLP
    tok.save(str(tmp_path))
    back = TextTokenizer.load(str(tmp_path))
    for text in ("好不错 Hello worlds!", "ÀÉ 好?", "x" * 120):
        assert back.encode(text).tolist() == tok.encode(text).tolist()


def test_ernie_tokenizer_follows_the_directory_settings_and_rejects_bad_vocabularies(tmp_path):
    pytest.importorskip("tokenizers")
    d = fake_model_dir(tmp_path / "cased", tokenizer_config={"do_lower_case": False, "unk_token": "[UNK]"})
    assert tokenizer_settings(d, field="f")["do_lower_case"] is False
    assert ernie_tokenizer(d, max_length=8).encode("Hello hello").tolist()[:3] == [1, 4, 10]
    bad = fake_model_dir(tmp_path / "nounk", vocab=[t for t in VOCAB if t != "[MASK]"])
    with pytest.raises(ConfigError, match=r"data\.text\.vocab_path: .*vocab\.txt lacks the special token\(s\) "
                                          r"\[MASK\]"):
        ernie_tokenizer(bad)
    dup = fake_model_dir(tmp_path / "dup", vocab=VOCAB + ["好"])
    with pytest.raises(ConfigError, match=r"vocab\.txt:15: token '好' repeats line 6"):
        read_vocab(model_dir_files(dup, field="f")["vocab"], field="f")
    with pytest.raises(ConfigError, match=r"max_length: 2 leaves no token beside \[CLS\] and \[SEP\]"):
        ernie_tokenizer(d, max_length=2)


def test_a_text_run_with_the_ernie_tokenizer_needs_a_model_directory(tmp_path):
    from robust_paddle.data.build import build_data

    path = write_corpus(str(tmp_path), 40)
    cfg = C.from_dict(text_config(path, str(tmp_path / "run"), **{"data.text.tokenizer": "ernie"}))
    with pytest.raises(ConfigError, match=r"data\.text\.tokenizer: ernie needs data\.text\.vocab_path .*or "
                                          r"model\.name: ernie with model\.params\.path"):
        build_data(cfg)
    cfg = C.with_values(cfg, {"model.name": "ernie", "model.params": {"path": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match=r"^model\.params\.path: '.*nope' is not a local directory"):
        build_data(cfg)
    d = fake_model_dir(tmp_path / "m")
    data = build_data(C.with_values(cfg, {"model.params": {"path": d}}))
    assert data.tokenizer.kind == "ernie" and data.model_kwargs["vocab"] == VOCAB
    assert int(data.train[0][0][0]) == 1  # every row starts with [CLS]
