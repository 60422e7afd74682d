"""data/table.py: CSV / TSV / JSONL rows with line numbers, Windows files, one-line errors."""

import pytest

from robust_paddle.data.table import MAX_JSON_DEPTH, read_table, table_format
from robust_paddle.errors import DataError


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(p)


def test_csv_with_bom_crlf_quotes_and_blank_lines(tmp_path):
    p = write(tmp_path, "a.csv", b'\xef\xbb\xbfid,text,label\r\n1,"hello, ""x""\r\nworld",pos\r\n\r\n2,b,neg\r\n\r\n')
    rows = read_table(p, required=["id", "label"])
    assert [(r.line, r.values) for r in rows] == [
        (2, {"id": "1", "text": 'hello, "x"\nworld', "label": "pos"}),
        (5, {"id": "2", "text": "b", "label": "neg"}),
    ]


def test_tsv_and_jsonl(tmp_path):
    t = write(tmp_path, "a.tsv", "id\tlabel\nx,1\t3\n")
    assert [r.values for r in read_table(t)] == [{"id": "x,1", "label": "3"}]
    j = write(tmp_path, "a.jsonl", '{"id": 1, "label": "cat"}\n\n{"id": 2, "label": 0}\n')
    assert [(r.line, r.values) for r in read_table(j)] == [(1, {"id": 1, "label": "cat"}), (3, {"id": 2, "label": 0})]


@pytest.mark.parametrize("name,data,message", [
    ("short.csv", "id,label\n1,2\n3\n", r"short\.csv:3: 1 field\(s\) but the header on line 1 has 2"),
    ("dup.csv", "id,id\n1,2\n", r"dup\.csv:1: header names column\(s\) \['id'\] twice"),
    ("empty.csv", "\n\n", r"empty\.csv: the file is empty"),
    ("bad.jsonl", '{"id": 1}\n{"id": \n', r"bad\.jsonl:2: not valid JSON"),
    ("list.jsonl", '[1, 2]\n', r"list\.jsonl:1: expected a JSON object"),
    ("deep.jsonl", "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + "\n", r"deep\.jsonl:1: JSON nested deeper"),
    ("latin.csv", b"id,label\n1,caf\xe9\n", r"latin\.csv:2: byte 0xe9 at column 6 is not UTF-8"),
    ("x.txt", "a\n", r"cannot tell the table format from the extension '\.txt'"),
])
def test_bad_tables_name_file_and_line(tmp_path, name, data, message):
    with pytest.raises(DataError, match=message):
        read_table(write(tmp_path, name, data))


def test_required_column_is_named(tmp_path):
    p = write(tmp_path, "a.jsonl", '{"id": 1, "label": 2}\n{"id": 2}\n')
    with pytest.raises(DataError, match=r"^data\.annotations: .*a\.jsonl:2: missing key\(s\) 'label'; the object has: id$"):
        read_table(p, required=["id", "label"], what="data.annotations")
    # CSV / TSV: named at the header's line, with the setting that chose the column when given
    c = write(tmp_path, "a.csv", "\nid,text\n1,x\n")
    with pytest.raises(DataError, match=r"a\.csv:2: missing column\(s\) label_column='y'; the header has: id, text$"):
        read_table(c, required={"id": "", "y": "label_column"})


def test_gbk_and_gb18030_tables(tmp_path):
    data = 'text,label\r\n好的，"很好",pos\r\n"差\r\n的",neg\r\n'  # CRLF ends, a quoted line break
    for enc in ("gbk", "gb18030"):
        p = write(tmp_path, f"{enc}.csv", data.encode(enc))
        rows = read_table(p, encoding=enc)
        assert [(r.line, r.values) for r in rows] == [(2, {"text": '好的，"很好"', "label": "pos"}),
                                                      (3, {"text": "差\n的", "label": "neg"})]
        with pytest.raises(DataError, match=rf"{enc}\.csv:2: byte 0x.. at column 1 is not UTF-8; save the file as "
                                            r"UTF-8 or set X$"):
            read_table(p, hint=" or set X")
    bad = write(tmp_path, "bad.tsv", b"a\tb\n\x81\x20\t1\n")
    with pytest.raises(DataError, match=r"bad\.tsv:2: byte 0x81 at column 1 is not GBK; save the file as GBK"):
        read_table(bad, encoding="gbk")


def test_broken_quoting_is_named_with_its_line(tmp_path):
    p = write(tmp_path, "q.csv", 'id,text\n1,ok\n2,"ab" ,c\n')
    with pytest.raises(DataError, match=r"q\.csv:3: ',' expected after '\"'"):
        read_table(p)


def test_format_override():
    assert table_format("x.txt", "tsv") == "tsv"
    with pytest.raises(DataError, match="table format 'xml' is not supported"):
        table_format("x.csv", "xml")
