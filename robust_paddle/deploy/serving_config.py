"""PaddleServing model package: ``serving_server/`` and ``serving_client/`` as ``paddle_serving_client.convert``
(Serving 0.9) writes them, without installing Serving (it cannot share an environment with this stack).

Layout written by :func:`write_serving_package`::

    <out>/serving_server/inference.pdmodel, inference.pdiparams          the exported program and weights
    <out>/serving_server/serving_server_conf.prototxt (+ .stream.prototxt, the binary encoding)
    <out>/serving_client/serving_client_conf.prototxt (+ .stream.prototxt)

Both configs are a ``GeneralModelConfig`` message with one ``feed_var`` (the image/feature tensor) and one
``fetch_var`` (logits or probabilities): ``name`` (the program's variable), ``alias_name`` (the name clients
use), ``is_lod_tensor`` (false: dense tensors), ``feed_type`` / ``fetch_type`` (Serving's codes: int64 0,
float32 1, int32 2, ...) and ``shape`` (one sample, without the batch dimension).

The message classes are generated at runtime from a ``FileDescriptorProto`` built in code (:func:`file_descriptor`)
that mirrors Serving's ``core/configure/proto/general_model_config.proto``; ``robust_paddle/proto/
general_model_config.proto`` is rendered from that descriptor (:func:`proto_source`) and a test keeps the two
equal, so there is no generated ``_pb2`` module to drift.
"""

from __future__ import annotations

import logging
import os
import shutil
from types import MappingProxyType
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from robust_paddle.errors import DataError

logger = logging.getLogger(__name__)

PROTO_PACKAGE = "baidu.paddle_serving.configure"
PROTO_FILE = "general_model_config.proto"
SERVER_DIR, CLIENT_DIR = "serving_server", "serving_client"
SERVER_CONF, CLIENT_CONF = "serving_server_conf.prototxt", "serving_client_conf.prototxt"
#: Serving's feed_type / fetch_type codes (paddle_serving_client io: int64 0, float32 1, int32 2 ...)
SERVING_DTYPES = MappingProxyType({"int64": 0, "float32": 1, "int32": 2, "float64": 3, "int16": 4, "float16": 5,
                                   "bfloat16": 6, "uint8": 7, "int8": 8, "bool": 9, "complex64": 10,
                                   "complex128": 11})

_F = descriptor_pb2.FieldDescriptorProto
# (message, [(field, number, label, type, type_name or None, default or None)]) in the .proto's order
_MESSAGES: tuple[tuple[str, tuple[tuple[str, int, int, int, str | None, str | None], ...]], ...] = (
    ("StrVec", (("str", 1, _F.LABEL_REPEATED, _F.TYPE_STRING, None, None),)),
    ("IntVec", (("ids", 1, _F.LABEL_REPEATED, _F.TYPE_INT32, None, None),)),
    ("Node", (
        ("pre_node_names", 1, _F.LABEL_REPEATED, _F.TYPE_STRING, None, None),
        ("pre_node_input_names", 2, _F.LABEL_REPEATED, _F.TYPE_MESSAGE, "StrVec", None),
        ("pre_node_input_idx", 3, _F.LABEL_REPEATED, _F.TYPE_MESSAGE, "IntVec", None),
        ("node_output_names", 4, _F.LABEL_REPEATED, _F.TYPE_STRING, None, None),
        ("op_node_name", 5, _F.LABEL_OPTIONAL, _F.TYPE_STRING, None, None),
    )),
    ("Graph", (
        ("nodes", 1, _F.LABEL_REPEATED, _F.TYPE_MESSAGE, "Node", None),
        ("feed_name", 2, _F.LABEL_REPEATED, _F.TYPE_STRING, None, None),
        ("fetch_name", 3, _F.LABEL_REPEATED, _F.TYPE_STRING, None, None),
        ("origin_name", 4, _F.LABEL_REPEATED, _F.TYPE_STRING, None, None),
        ("alias_name", 5, _F.LABEL_REPEATED, _F.TYPE_STRING, None, None),
    )),
    ("FeedVar", (
        ("name", 1, _F.LABEL_OPTIONAL, _F.TYPE_STRING, None, None),
        ("alias_name", 2, _F.LABEL_OPTIONAL, _F.TYPE_STRING, None, None),
        ("is_lod_tensor", 3, _F.LABEL_OPTIONAL, _F.TYPE_BOOL, None, "false"),
        ("feed_type", 4, _F.LABEL_OPTIONAL, _F.TYPE_INT32, None, "0"),
        ("shape", 5, _F.LABEL_REPEATED, _F.TYPE_INT32, None, None),
    )),
    ("FetchVar", (
        ("name", 1, _F.LABEL_OPTIONAL, _F.TYPE_STRING, None, None),
        ("alias_name", 2, _F.LABEL_OPTIONAL, _F.TYPE_STRING, None, None),
        ("is_lod_tensor", 3, _F.LABEL_OPTIONAL, _F.TYPE_BOOL, None, "false"),
        ("fetch_type", 4, _F.LABEL_OPTIONAL, _F.TYPE_INT32, None, "0"),
        ("shape", 5, _F.LABEL_REPEATED, _F.TYPE_INT32, None, None),
    )),
    ("GeneralModelConfig", (
        ("graph", 1, _F.LABEL_OPTIONAL, _F.TYPE_MESSAGE, "Graph", None),
        ("feed_var", 2, _F.LABEL_REPEATED, _F.TYPE_MESSAGE, "FeedVar", None),
        ("fetch_var", 3, _F.LABEL_REPEATED, _F.TYPE_MESSAGE, "FetchVar", None),
    )),
)
_TYPE_NAMES = {_F.TYPE_STRING: "string", _F.TYPE_INT32: "int32", _F.TYPE_BOOL: "bool"}
_LABEL_NAMES = {_F.LABEL_OPTIONAL: "optional", _F.LABEL_REPEATED: "repeated"}


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """``general_model_config.proto`` (proto2, package ``baidu.paddle_serving.configure``) as a descriptor."""
    fdp = descriptor_pb2.FileDescriptorProto(name=PROTO_FILE, package=PROTO_PACKAGE, syntax="proto2")
    for msg_name, fields in _MESSAGES:
        msg = fdp.message_type.add(name=msg_name)
        for name, number, label, ftype, type_name, default in fields:
            f = msg.field.add(name=name, number=number, label=label, type=ftype)
            if type_name is not None:
                f.type_name = f".{PROTO_PACKAGE}.{type_name}"
            if default is not None:
                f.default_value = default
    return fdp


def message_classes() -> dict[str, type]:
    """Message classes (``FeedVar``, ``FetchVar``, ``GeneralModelConfig`` ...) built in a private pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PROTO_PACKAGE}.{name}"))
            for name, _ in _MESSAGES}


def proto_source() -> str:
    """The ``.proto`` text of :func:`file_descriptor` (what ``robust_paddle/proto/`` holds)."""
    lines = ["// Mirror of PaddleServing's core/configure/proto/general_model_config.proto (Apache-2.0 schema).",
             "// Rendered by robust_paddle.deploy.serving_config.proto_source(); tests keep it equal to the code.",
             "", 'syntax = "proto2";', f"package {PROTO_PACKAGE};", ""]
    for msg_name, fields in _MESSAGES:
        lines.append(f"message {msg_name} {{")
        for name, number, label, ftype, type_name, default in fields:
            tname = type_name if type_name is not None else _TYPE_NAMES[ftype]
            opt = f" [ default = {default} ]" if default is not None else ""
            lines.append(f"  {_LABEL_NAMES[label]} {tname} {name} = {number}{opt};")
        lines += ["}", ""]
    return "\n".join(lines)


def proto_path() -> str:
    """Path of the checked-in ``.proto`` mirror."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "proto", PROTO_FILE)


def build_model_config(*, feed_name: str, feed_alias: str, feed_shape: list[int], fetch_name: str,
                       fetch_alias: str, fetch_shape: list[int], dtype: str = "float32",
                       feed_dtype: str | None = None) -> Any:
    """A ``GeneralModelConfig`` with one dense feed and one dense fetch variable.

    Args:
        feed_name / fetch_name: program variable names; *_alias: the names Serving clients use.
        feed_shape / fetch_shape: one sample's shape (no batch dimension), e.g. [1, 8, 8] and [10].
        dtype: the fetch variable's dtype, and the feed's unless ``feed_dtype`` is given (keys of
            :data:`SERVING_DTYPES`; text models feed ``int64`` token ids).
    """
    feed_dtype = feed_dtype or dtype
    for d in (dtype, feed_dtype):
        if d not in SERVING_DTYPES:
            raise DataError(f"dtype {d!r} has no Serving type code; allowed: {', '.join(SERVING_DTYPES)}")
    for what, shape in (("feed_shape", feed_shape), ("fetch_shape", fetch_shape)):
        if not shape or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape):
            raise DataError(f"{what} must be a non-empty list of positive ints (batch dimension excluded), got {shape!r}")
    classes = message_classes()
    cfg = classes["GeneralModelConfig"]()
    cfg.feed_var.add(name=feed_name, alias_name=feed_alias, is_lod_tensor=False,
                     feed_type=SERVING_DTYPES[feed_dtype], shape=list(feed_shape))
    cfg.fetch_var.add(name=fetch_name, alias_name=fetch_alias, is_lod_tensor=False,
                      fetch_type=SERVING_DTYPES[dtype], shape=list(fetch_shape))
    return cfg


def _write_conf(cfg: Any, folder: str, filename: str) -> list[str]:
    text_path = os.path.join(folder, filename)
    stream_path = os.path.join(folder, filename.replace(".prototxt", ".stream.prototxt"))
    with open(text_path, "w", encoding="utf-8") as fh:
        fh.write(text_format.MessageToString(cfg))
    with open(stream_path, "wb") as fh:
        fh.write(cfg.SerializeToString())
    return [text_path, stream_path]


def write_serving_package(model_prefix: str, out_dir: str, *, feed_name: str, fetch_name: str,
                          input_shape: list[int], num_classes: int, softmax: bool,
                          input_dtype: str = "float32") -> dict[str, Any]:
    """Copy the exported model into ``out_dir/serving_server`` and write both Serving configs.

    Args:
        model_prefix: ``<dir>/inference`` of the exported Paddle model.
        out_dir: export folder; ``serving_server/`` and ``serving_client/`` are created in it.
        feed_name / fetch_name: the program's input and output variable names.
        input_shape: one sample, e.g. [1, 8, 8]; num_classes: width of the output.
        softmax: whether the output is probabilities (alias ``probabilities``) or logits (alias ``logits``).
        input_dtype: the feed's dtype: ``float32``, or ``int64`` for the token ids ``[L]`` of a text model
            (a client tokenises with the export's ``tokenizer.json``, whose long-text rule sets the ``L`` ids).

    Returns:
        ``{"server_dir", "client_dir", "files", "feed_alias", "fetch_alias"}``.
    """
    from robust_paddle import _compat

    server, client = os.path.join(out_dir, SERVER_DIR), os.path.join(out_dir, CLIENT_DIR)
    os.makedirs(server, exist_ok=True)
    os.makedirs(client, exist_ok=True)
    files = []
    for src in (_compat.model_file(model_prefix), _compat.params_file(model_prefix)):
        dst = os.path.join(server, os.path.basename(src))
        shutil.copyfile(src, dst)
        files.append(dst)
    fetch_alias = "probabilities" if softmax else "logits"
    cfg = build_model_config(feed_name=feed_name, feed_alias=feed_name, feed_shape=[int(v) for v in input_shape],
                             fetch_name=fetch_name, fetch_alias=fetch_alias, fetch_shape=[int(num_classes)],
                             feed_dtype=input_dtype)
    files += _write_conf(cfg, server, SERVER_CONF)
    files += _write_conf(cfg, client, CLIENT_CONF)
    logger.info("PaddleServing package written to %s and %s", server, client)
    return {"server_dir": server, "client_dir": client, "files": files, "feed_alias": feed_name,
            "fetch_alias": fetch_alias}


def read_model_config(path: str) -> Any:
    """Parse a ``serving_*_conf.prototxt`` (text format) into a ``GeneralModelConfig`` message.

    Raises:
        FileNotFoundError: no such file. ValueError: the text does not parse against the schema.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Serving config not found: {path}")
    cfg = message_classes()["GeneralModelConfig"]()
    from robust_paddle.data.textfile import read_text

    try:
        text_format.Parse(read_text(path), cfg)
    except text_format.ParseError as e:
        raise DataError(f"{path}: not a GeneralModelConfig text proto: {e}") from None
    return cfg
