"""``robust-paddle serve``: an HTTP JSON inference server for a folder written by ``robust-paddle export``.

Flask routes served by waitress (a production WSGI server; threads handle connections, decoding and JSON).
Every request's samples go through one :class:`MicroBatcher`: a single thread owns the Paddle Inference
predictor (which is not thread-safe) and runs whatever requests are waiting together, up to
``max_batch_size`` samples, so concurrent requests are batched and never share a predictor call's buffers.

API:

* ``GET /health`` -> ``{"status": "ok", "model_version": ...}`` (503 when the predictor thread has stopped).
* ``GET /metadata`` -> classes, input shape/kind, output kind, preprocessing, limits, model version, source.
* ``POST /predict`` with a JSON object holding exactly one of

  - ``"images"``: a list of base64 strings of PNG/JPEG files (a ``data:image/...;base64,`` prefix is allowed),
    preprocessed like training (``robust_paddle.deploy.predictor.preprocess_images``);
  - ``"inputs"``: the model input itself, normalised as in training: nested lists of numbers shaped
    ``[N, *input_shape]`` or one sample ``input_shape`` (text models: token ids);
  - ``"texts"`` (text models): a list of raw strings (sentence-pair models: ``[text, pair]`` lists), tokenised
    with the export's ``tokenizer.json`` under the same long-text rule as training (truncation at
    tokenisation, sliding windows inside the program), so the server predicts what ``robust-paddle eval`` does;

  and optionally ``"top_k"`` (1..num_classes, default min(5, num_classes)). The response holds, per sample,
  the top class (``class_id``, ``label``, ``probability``) and the ``top_k`` list.

Bad requests get a 4xx JSON ``{"error": "..."}`` naming what is wrong and what is allowed: body not JSON
or not an object, unknown keys, wrong shape or dtype, undecodable images, too many samples (400), body over
``max_body_mb`` (413), unknown path (404), wrong method (405). The server keeps serving afterwards.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import json
import logging
import os
import queue
import re
import signal
import threading
from typing import Any

import numpy as np

from robust_paddle.deploy.predictor import (
    ModelInfo,
    PaddlePredictor,
    PixelBudgetError,
    load_model_info,
    preprocess_images,
)
from robust_paddle.errors import ConfigError, DataError, MissingDependencyError
from robust_paddle.ops import softmax

logger = logging.getLogger(__name__)

ALLOWED_KEYS = ("images", "inputs", "texts", "top_k")
INPUT_KEYS = ("images", "inputs", "texts")
DATA_URL_SEP = ";base64,"
#: deepest JSON nesting a request may have (a valid request needs at most 2 + the input's rank)
MAX_JSON_DEPTH = 400
#: JSON string literals (escapes included); blanked before brackets are counted
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


class RequestError(DataError):
    """A client error: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------- batching
class MicroBatcher:
    """Runs ``predict_fn`` on one thread over batches assembled from concurrent requests.

    Each :meth:`submit` enqueues ``[n, ...]`` samples (``1 <= n <= max_batch_size``) and blocks until its rows
    of the output are ready. The worker takes the oldest request, then every request already waiting (or
    arriving within ``max_wait_ms``) while the total stays within ``max_batch_size``, concatenates them,
    calls ``predict_fn`` once and hands each request its own slice. An exception in ``predict_fn`` is
    raised in every request of that batch; the worker keeps running.

    Args:
        predict_fn: ``[B, ...] float32 -> [B, C]``; only ever called from the worker thread.
        max_batch_size: largest batch passed to ``predict_fn``.
        max_wait_ms: how long to wait for more requests before running a partial batch (0: run what is
            waiting now, no added latency).
    """

    def __init__(self, predict_fn: Any, *, max_batch_size: int, max_wait_ms: float = 0.0) -> None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an int >= 1, got {max_batch_size!r}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self._fn = predict_fn
        self.max_batch_size = max_batch_size
        self._wait = max_wait_ms / 1000.0
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.batches_run = 0
        self._thread = threading.Thread(target=self._loop, name="robust-paddle-batcher", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def submit(self, x: np.ndarray, *, timeout: float = 120.0) -> np.ndarray:
        """Predict ``x [n, ...]``; blocks until done. Raises what ``predict_fn`` raised, or TimeoutError."""
        if not 1 <= x.shape[0] <= self.max_batch_size:
            raise ValueError(f"a request holds 1..{self.max_batch_size} samples, got {x.shape[0]}")
        if not self.alive:
            raise RuntimeError("the predictor thread has stopped")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((x, fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        """Stop the worker; requests still queued fail with RuntimeError."""
        self._stop.set()
        self._thread.join(timeout=10)
        while (item := self._next(None)) is not None:
            item[1].set_exception(RuntimeError("the server is shutting down"))

    def _next(self, timeout: float | None) -> tuple[np.ndarray, concurrent.futures.Future] | None:
        try:
            return self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _loop(self) -> None:
        carry = None
        while not self._stop.is_set():
            first = carry or self._next(0.1)
            carry = None
            if first is None:
                continue
            batch, n = [first], first[0].shape[0]
            while n < self.max_batch_size:
                item = self._next(self._wait)
                if item is None:
                    break
                if n + item[0].shape[0] > self.max_batch_size:
                    carry = item  # starts the next batch
                    break
                batch.append(item)
                n += item[0].shape[0]
            self._run(batch)

    def _run(self, batch: list[tuple[np.ndarray, concurrent.futures.Future]]) -> None:
        try:
            out = self._fn(np.concatenate([x for x, _ in batch]) if len(batch) > 1 else batch[0][0])
        except Exception as e:  # noqa: BLE001 - handed to every waiting request
            for _, fut in batch:
                fut.set_exception(e)
            return
        self.batches_run += 1
        start = 0
        for x, fut in batch:
            fut.set_result(out[start:start + x.shape[0]])
            start += x.shape[0]


# ------------------------------------------------------------------------------------------- requests
def _decode_base64(item: Any, i: int) -> bytes:
    if not isinstance(item, str):
        raise RequestError(f"images[{i}] must be a base64 string of a PNG/JPEG file, got {type(item).__name__}")
    if item.startswith("data:") and DATA_URL_SEP in item:
        item = item.split(DATA_URL_SEP, 1)[1]
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"images[{i}] is not valid base64 ({e}); send base64-encoded PNG/JPEG bytes") from None


def json_depth(raw: bytes) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text, counted without parsing it (strings blanked first).

    Python's ``json`` recurses once per level and fails with RecursionError near 1000 levels, so the
    server measures the depth first and refuses deep bodies with a 400. Exact for valid JSON; for invalid
    JSON the number is meaningless and ``json.loads`` reports the error.
    """
    text = np.frombuffer(_JSON_STRING.sub(b'""', raw), dtype=np.uint8)
    steps = (np.isin(text, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(text, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(steps).max(initial=0))


def parse_json_body(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Request bytes -> decoded JSON; RequestError (400) when not JSON or nested deeper than ``max_depth``."""
    depth = json_depth(raw)
    if depth > max_depth:
        raise RequestError(f"the body nests JSON {depth} levels deep; at most {max_depth} levels are allowed")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(f"the body is not valid JSON ({e}); send {{\"images\": [...]}} or {{\"inputs\": [...]}}") from None


def parse_texts(texts: Any, info: ModelInfo, tokenizer: Any, *, max_batch_size: int) -> np.ndarray:
    """Raw strings (or ``[text, pair]`` lists) -> token ids ``[N, L]`` int64 by the saved tokenizer and rule."""
    if info.kind != "text":
        raise RequestError(f"this model takes {info.kind} inputs, not texts; send "
                           f"{'images' if info.kind == 'image' else 'inputs'}")
    pairs = bool(info.text.get("pairs"))
    shape = "[text, pair] lists" if pairs else "strings"
    if not isinstance(texts, list) or not texts:
        raise RequestError(f"'texts' must be a non-empty list of {shape}")
    if len(texts) > max_batch_size:
        raise RequestError(f"'texts' holds {len(texts)} texts; at most {max_batch_size} per request (--max-batch-size)")
    limit = int(info.text.get("max_chars") or 0)
    samples = []
    for i, t in enumerate(texts):
        parts = t if pairs and isinstance(t, list) and len(t) == 2 else (t,) if not pairs else None
        if parts is None or not all(isinstance(p, str) for p in parts):
            raise RequestError(f"texts[{i}] must be {'a [text, pair] list of two strings' if pairs else 'a string'}, "
                               f"got {type(t).__name__}")
        for p in parts:
            if not p.strip():
                raise RequestError(f"texts[{i}] is empty")
            if limit and len(p) > limit:
                raise RequestError(f"texts[{i}] has {len(p)} characters; the model's limit is {limit} (data.text.max_chars)")
        samples.append(tuple(parts) if pairs else parts[0])
    return tokenizer.encode_batch(samples)


def parse_inputs(inputs: Any, info: ModelInfo, *, max_batch_size: int) -> np.ndarray:
    """Nested lists of numbers -> ``[N, *input_shape]`` float32 (text models: int64 token ids), with shape/dtype
    errors named."""
    want = list(info.input_shape)
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(f"'inputs' must be a non-empty nested list of numbers shaped [N, {', '.join(map(str, want))}] "
                           f"or {want}; got {type(inputs).__name__}")
    try:
        arr = np.asarray(inputs)
    except ValueError:
        arr = None
    if arr is None or arr.dtype == object:
        raise RequestError(f"'inputs' must be a rectangular nested list of numbers shaped [N, "
                           f"{', '.join(map(str, want))}]; rows have different lengths or hold non-numbers")
    if arr.dtype.kind not in "iuf":
        kind = {"b": "booleans", "U": "strings", "S": "strings"}.get(arr.dtype.kind, str(arr.dtype))
        raise RequestError(f"'inputs' must hold numbers (converted to float32); got {kind}")
    if list(arr.shape) == want:
        arr = arr[None]
    if list(arr.shape[1:]) != want:
        raise RequestError(f"'inputs' has shape {list(arr.shape)}; expected [N, {', '.join(map(str, want))}] "
                           f"with 1 <= N <= {max_batch_size}, or one sample {want}")
    if info.kind == "text":
        if arr.dtype.kind not in "iu" or (arr.size and arr.min() < 0):
            raise RequestError("'inputs' of a text model are token ids: integers >= 0 (or send raw 'texts')")
        return arr.astype(np.int64)
    with np.errstate(over="ignore"):  # numbers beyond float32 become inf and are rejected just below
        x = arr.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise RequestError("'inputs' holds NaN or infinite values (or numbers beyond float32 range)")
    return x


def parse_request(body: Any, info: ModelInfo, *, max_batch_size: int, tokenizer: Any = None,
                  max_pixels: int | None = None) -> tuple[np.ndarray, int]:
    """A decoded JSON body -> (model input ``[N, *input_shape]`` float32 / int64 token ids, top_k).

    ``max_pixels``: decoded-pixel budget of the request's images, checked on their headers before any is
    decoded (413 when exceeded)."""
    if not isinstance(body, dict):
        raise RequestError(f"the body must be a JSON object with 'images', 'inputs' or 'texts'; got a JSON "
                           f"{type(body).__name__}")
    unknown = sorted(set(body) - set(ALLOWED_KEYS))
    if unknown:
        raise RequestError(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ALLOWED_KEYS)}")
    if sum(k in body for k in INPUT_KEYS) != 1:
        raise RequestError("send exactly one of 'images' (base64 PNG/JPEG strings), 'inputs' (nested number lists) "
                           "or 'texts' (strings, text models)")
    top_k = body.get("top_k", min(5, info.num_classes))
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= info.num_classes:
        raise RequestError(f"'top_k' must be an int in 1..{info.num_classes}, got {top_k!r}")
    if "texts" in body:
        x = parse_texts(body["texts"], info, tokenizer, max_batch_size=max_batch_size)
    elif "images" in body:
        images = body["images"]
        if not isinstance(images, list) or not images:
            raise RequestError("'images' must be a non-empty list of base64 strings of PNG/JPEG files")
        if len(images) > max_batch_size:
            raise RequestError(f"'images' holds {len(images)} images; at most {max_batch_size} per request "
                               "(--max-batch-size)")
        blobs = [_decode_base64(item, i) for i, item in enumerate(images)]
        try:
            x = preprocess_images(blobs, info, max_pixels=max_pixels)
        except PixelBudgetError as e:
            raise RequestError(str(e), 413) from None
        except ValueError as e:
            raise RequestError(str(e)) from None
    else:
        x = parse_inputs(body["inputs"], info, max_batch_size=max_batch_size)
        if tokenizer is not None and x.size and x.max() >= tokenizer.vocab_size:
            raise RequestError(f"'inputs' holds token id {int(x.max())}; the vocabulary has {tokenizer.vocab_size} ids")
        if x.shape[0] > max_batch_size:
            raise RequestError(f"'inputs' holds {x.shape[0]} samples; at most {max_batch_size} per request "
                               "(--max-batch-size)")
    return x, top_k


def format_predictions(probs: np.ndarray, info: ModelInfo, *, top_k: int) -> list[dict[str, Any]]:
    """``[N, C]`` probabilities -> per sample the top class and the ``top_k`` list (highest first)."""
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:top_k]
        top = [{"class_id": int(c), "label": info.class_names[c], "probability": float(row[c])} for c in order]
        out.append({**top[0], "top_k": top})
    return out


# ------------------------------------------------------------------------------------------------ app
def metadata(info: ModelInfo, *, max_batch_size: int, max_body_bytes: int, max_pixels: int | None = None,
             max_json_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    meta = info.to_yaml_dict()
    return {"model_version": info.model_version, "class_names": list(info.class_names),
            "num_classes": info.num_classes, "input": meta["input"], "output": meta["output"],
            "preprocess": meta["preprocess"], "source": info.source,
            "limits": {"max_batch_size": max_batch_size, "max_body_bytes": max_body_bytes,
                       "max_pixels_per_request": max_pixels, "max_json_depth": max_json_depth}}


def _positive(value: Any, flag: str, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 or value != value:
        raise ConfigError(f"{flag} must be {'an int' if integer else 'a number'} > 0, got {value!r}")


def load_server_model(model_dir: str, *, cpu_threads: int = 1) -> tuple[ModelInfo, PaddlePredictor]:
    """The export folder's metadata and a predictor that has answered one zero input.

    Raises:
        FileNotFoundError / ValueError: not an export folder (from ``load_model_info``).
        DataError: Paddle Inference cannot load or run the model files (one line naming the folder).
    """
    info = load_model_info(model_dir)
    try:
        predictor = PaddlePredictor(info.prefix, int8=bool(info.source.get("int8")), threads=cpu_threads,
                                    optimized=True, input_dtype=info.input_dtype)
        predictor(np.zeros([1, *info.input_shape], dtype=info.input_dtype))  # fail at start-up, not on a request
    except Exception as e:  # noqa: BLE001 - Paddle raises assorted C++ error types for unreadable model files
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"{model_dir}: Paddle Inference cannot load the exported model ({type(e).__name__}: "
                        f"{first[:300]}); re-run `robust-paddle export` into this folder") from e
    return info, predictor


def create_app(model_dir: str, *, max_batch_size: int = 64, max_body_mb: float = 10.0, cpu_threads: int = 1,
               max_wait_ms: float = 0.0, max_megapixels: float = 16.0, decode_workers: int = 2,
               max_requests: int | None = None) -> Any:
    """The Flask app serving ``model_dir``; ``app.extensions["robust_paddle"]`` holds the batcher (close it
    with :func:`close_app`).

    Resource bounds (docs/serving.md, "Limits"): at most ``max_requests`` ``/predict`` requests are in
    progress at once (None: no bound; more get 503 at once, so with ``max_requests`` below the server's
    thread count a thread is always free for ``/health``); of those, at most ``decode_workers`` parse JSON and decode images at a time; the
    images of one request may hold at most ``max_megapixels`` million pixels, read from their headers before
    decoding (413 beyond); bodies nested deeper than ``MAX_JSON_DEPTH`` get 400.

    Raises:
        ConfigError: a limit is not a positive number.
        FileNotFoundError / ValueError / DataError: ``model_dir`` is not a loadable export folder.
    """
    try:
        from flask import Flask, Response, request
        from werkzeug.exceptions import HTTPException
    except ImportError as e:
        raise MissingDependencyError("the server needs Flask and waitress: pip install -e .[serve]") from e
    _positive(max_body_mb, "--max-body-mb")
    _positive(max_megapixels, "--max-megapixels")
    _positive(decode_workers, "--decode-workers", integer=True)
    if max_requests is not None:
        _positive(max_requests, "--max-requests", integer=True)
    info, predictor = load_server_model(model_dir, cpu_threads=cpu_threads)
    tokenizer = info.tokenizer() if info.kind == "text" else None
    batcher = MicroBatcher(predictor, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
    max_body = int(max_body_mb * 1024 * 1024)
    max_pixels = int(max_megapixels * 1e6)
    admission = threading.BoundedSemaphore(max_requests) if max_requests is not None else None
    decoding = threading.BoundedSemaphore(decode_workers)
    app = Flask("robust_paddle.deploy.serve")
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.extensions["robust_paddle"] = {"info": info, "batcher": batcher, "admission": admission,
                                       "decoding": decoding}
    meta = metadata(info, max_batch_size=max_batch_size, max_body_bytes=max_body, max_pixels=max_pixels)

    def reply(payload: dict[str, Any], status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, mimetype="application/json")

    @app.errorhandler(RequestError)
    def _request_error(e: RequestError) -> Response:
        resp = reply({"error": str(e)}, e.status)
        if e.status == 503:
            resp.headers["Retry-After"] = "1"
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        messages = {
            404: "unknown path; endpoints: GET /health, GET /metadata, POST /predict",
            405: f"method {request.method} is not allowed here; endpoints: GET /health, GET /metadata, POST /predict",
            413: f"request body is larger than the limit of {max_body} bytes ({max_body_mb:g} MB, --max-body-mb)",
        }
        return reply({"error": messages.get(e.code, e.description or e.name)}, e.code or 500)

    @app.errorhandler(Exception)
    def _internal(e: Exception) -> Response:
        logger.exception("request failed")
        return reply({"error": f"internal error: {type(e).__name__}: {e}"}, 500)

    @app.get("/health")
    def health() -> Response:
        ok = batcher.alive
        return reply({"status": "ok" if ok else "unavailable", "model_version": info.model_version}, 200 if ok else 503)

    @app.get("/metadata")
    def get_metadata() -> Response:
        return reply(meta)

    @app.post("/predict")
    def predict() -> Response:
        # admission before reading the body: a refused request costs neither memory nor a decoding slot
        if admission is not None and not admission.acquire(blocking=False):
            raise RequestError(f"the server is busy ({max_requests} requests in progress, --max-requests); "
                               "retry shortly", 503)
        try:
            raw = request.get_data(cache=False)  # raises 413 beyond MAX_CONTENT_LENGTH
            with decoding:  # bounds the memory of parsed bodies and decoded images
                body = parse_json_body(raw)
                del raw
                x, top_k = parse_request(body, info, max_batch_size=max_batch_size, tokenizer=tokenizer,
                                         max_pixels=max_pixels)
                del body
            out = batcher.submit(x)
        finally:
            if admission is not None:
                admission.release()
        probs = out if info.softmax else softmax(out).astype(np.float32)
        return reply({"model_version": info.model_version,
                      "predictions": format_predictions(probs, info, top_k=top_k)})

    return app


def close_app(app: Any) -> None:
    """Stop the app's batching thread."""
    app.extensions["robust_paddle"]["batcher"].close()


# --------------------------------------------------------------------------------------------- server
class ServerHandle:
    """A waitress server for ``app`` on ``host:port`` (port 0: an ephemeral port), run on a thread by
    :meth:`start` or in the foreground by :meth:`serve_forever`."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, threads: int = 4,
                 max_body_bytes: int = 10 * 1024 * 1024) -> None:
        import waitress

        self._map: dict = {}
        # Flask answers bodies over the limit with a JSON 413; waitress's own (plain-text) limit is only a
        # backstop far above it, so it bounds what waitress spools to disk without hiding the JSON error
        backstop = max(64 * 1024 * 1024, 4 * max_body_bytes)
        self.server = waitress.create_server(app, map=self._map, host=host, port=port, threads=threads,
                                             max_request_body_size=backstop, ident="robust-paddle")
        self.host, self.port = host, int(self.server.effective_port)
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> ServerHandle:
        self._thread = threading.Thread(target=self.server.run, name="robust-paddle-waitress", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.run()

    def close(self) -> None:
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(self._map)
        if self._thread is not None:
            self._thread.join(timeout=10)


def serve_command(model_dir: str, *, host: str = "127.0.0.1", port: int = 8080, max_batch_size: int = 64,
                  max_body_mb: float = 10.0, threads: int = 4, cpu_threads: int | None = None,
                  max_wait_ms: float = 0.0, max_megapixels: float = 16.0, decode_workers: int = 2,
                  max_requests: int | None = None) -> None:
    """Serve ``model_dir`` until interrupted (``robust-paddle serve``).

    Args:
        host, port: where to listen (port 0 picks a free one).
        max_batch_size: most samples per request and per predictor call.
        max_body_mb: larger request bodies get 413.
        threads: waitress worker threads (connections handled at once).
        cpu_threads: Paddle Inference math threads (default: half the cores, 1..4).
        max_wait_ms: how long the batcher waits to fill a batch (0: no added latency).
        max_megapixels: decoded-pixel budget of one request's images (millions of pixels).
        decode_workers: requests parsing JSON / decoding images at once.
        max_requests: ``/predict`` requests in progress at once, more get 503 (default ``threads - 1``, at
            least 1, so one thread stays free for ``/health``).

    Raises:
        ConfigError: a bad flag value. FileNotFoundError / ValueError / DataError: a bad model folder.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be an int >= 1, got {threads!r}")
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ConfigError(f"--max-batch-size must be an int >= 1, got {max_batch_size!r}")
    cpu_threads = cpu_threads or max(1, min(4, (os.cpu_count() or 2) // 2))
    max_requests = max(1, threads - 1) if max_requests is None else max_requests
    app = create_app(model_dir, max_batch_size=max_batch_size, max_body_mb=max_body_mb, cpu_threads=cpu_threads,
                     max_wait_ms=max_wait_ms, max_megapixels=max_megapixels, decode_workers=decode_workers,
                     max_requests=max_requests)
    handle = ServerHandle(app, host=host, port=port, threads=threads, max_body_bytes=int(max_body_mb * 1024 * 1024))
    info = app.extensions["robust_paddle"]["info"]
    # stdout, not only the log: with --port 0 this line is how a caller learns the port
    print(f"serving {model_dir} (model {info.model_version}, {info.num_classes} classes, input "
          f"{list(info.input_shape)}) at {handle.url}", flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (docker stop, kill) shuts down like Ctrl-C: waitress stops, the batcher thread is joined
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        handle.serve_forever()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        handle.close()
        close_app(app)
        logger.info("server stopped")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
