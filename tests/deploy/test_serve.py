"""The HTTP server on a real waitress socket (127.0.0.1, ephemeral port): health, metadata, predictions equal to
evaluation's, every malformed request -> 4xx JSON while the server keeps serving, concurrent clients, and the
micro-batcher's batching and error handling."""

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from _export_runs import exported, trained_run
from PIL import Image

from robust_paddle.deploy.predictor import PaddlePredictor, decode_image, load_model_info, normalize
from robust_paddle.deploy.serve import MicroBatcher, ServerHandle, close_app, create_app, serve_command
from robust_paddle.ops import softmax
from robust_paddle.pipeline.build import load_run

MAX_BATCH = 8
MAX_BODY_MB = 0.25


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The digits small_cnn export and the evaluation reference on its test split."""
    cfg, out, _ = exported(tmp_path_factory, "small_cnn")
    _, ckpt = trained_run(tmp_path_factory, "small_cnn")
    run = load_run(cfg, ckpt)
    loader = run.loaders["test"]
    logits, idx = run.trainer.predict_logits(loader)
    ds = loader.dataset
    x = np.stack([ds[int(i)][0] for i in idx])
    raw = np.stack([ds.data[int(i)] for i in idx])  # HWC in [0, 1]: digits values k/16 before normalisation
    return {"dir": out, "info": load_model_info(out), "x": x, "raw": raw, "probs": softmax(logits)}


@pytest.fixture(scope="module")
def server(model):
    app = create_app(model["dir"], max_batch_size=MAX_BATCH, max_body_mb=MAX_BODY_MB)
    handle = ServerHandle(app, port=0, threads=6, max_body_bytes=int(MAX_BODY_MB * 1024 * 1024)).start()
    yield handle.url
    handle.close()
    close_app(app)


def png_b64(img01: np.ndarray) -> str:
    """HWC [0, 1] grey image -> base64 of an 8-bit PNG holding round(255 * value)."""
    buf = io.BytesIO()
    Image.fromarray(np.rint(img01[:, :, 0] * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def post(url, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url + "/predict", data=data, headers={"Content-Type": "application/json"}, timeout=60, **kw)


def probs_of(resp_json, num_classes):
    out = np.zeros((len(resp_json["predictions"]), num_classes), dtype=np.float64)
    for i, p in enumerate(resp_json["predictions"]):
        for t in p["top_k"]:
            out[i, t["class_id"]] = t["probability"]
    return out


def test_health_and_metadata(server, model):
    r = requests.get(server + "/health", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok", "model_version": model["info"].model_version}
    meta = requests.get(server + "/metadata", timeout=10).json()
    assert meta["class_names"] == [str(i) for i in range(10)] and meta["num_classes"] == 10
    assert meta["input"]["shape"] == [1, 8, 8] and meta["input"]["kind"] == "image"
    assert meta["model_version"] == model["info"].model_version and meta["output"]["softmax"] is False
    assert meta["preprocess"]["mean"] == list(model["info"].mean)
    assert meta["limits"] == {"max_batch_size": MAX_BATCH, "max_body_bytes": int(MAX_BODY_MB * 1024 * 1024),
                              "max_pixels_per_request": 16_000_000, "max_json_depth": 400}


def test_inputs_predictions_equal_eval(server, model):
    x, ref = model["x"][:MAX_BATCH], model["probs"][:MAX_BATCH]
    r = post(server, {"inputs": x.tolist(), "top_k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == model["info"].model_version
    got = probs_of(body, 10)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert [p["class_id"] for p in body["predictions"]] == ref.argmax(1).tolist()
    assert [p["label"] for p in body["predictions"]] == [str(c) for c in ref.argmax(1)]
    # one sample without the batch axis, default top_k = 5 sorted by probability
    one = post(server, {"inputs": x[0].tolist()}).json()["predictions"]
    assert len(one) == 1 and len(one[0]["top_k"]) == 5
    probs = [t["probability"] for t in one[0]["top_k"]]
    assert probs == sorted(probs, reverse=True) and one[0]["probability"] == probs[0]


def test_image_predictions_match_eval(server, model):
    """PNG images of the test digits: the server's preprocessing (pixel / 255, training mean/std) gives the
    same probabilities as the exported model on those decoded pixels, and evaluation's classes."""
    n = MAX_BATCH
    images = [png_b64(img) for img in model["raw"][:n]]
    r = post(server, {"images": images, "top_k": 10})
    assert r.status_code == 200, r.text
    got = probs_of(r.json(), 10)
    decoded = np.stack([decode_image(base64.b64decode(b), channels=1, size=(8, 8)) for b in images])
    np.testing.assert_allclose(decoded, model["raw"][:n], atol=0.5 / 255 + 1e-7)  # 8-bit quantisation only
    ref = softmax(PaddlePredictor(model["info"].prefix, optimized=False)(normalize(decoded, model["info"])))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # against evaluation (values k/16 quantised to 8 bits): same classes, probabilities within the rounding
    assert got.argmax(1).tolist() == model["probs"][:n].argmax(1).tolist()
    np.testing.assert_allclose(got, model["probs"][:n], atol=2e-2)
    # a data URL and an RGB JPEG are accepted too (converted to grey like training)
    rgb = np.repeat(np.rint(model["raw"][0] * 255).astype(np.uint8), 3, axis=2)
    buf = io.BytesIO()
    Image.fromarray(rgb).resize((16, 16)).save(buf, format="JPEG")
    r = post(server, {"images": ["data:image/png;base64," + images[0],
                                 base64.b64encode(buf.getvalue()).decode()]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2


BAD_REQUESTS = [
    ("not json", b"{images: [", 400, "the body is not valid JSON"),
    ("not an object", [1, 2], 400, "must be a JSON object with 'images', 'inputs' or 'texts'; got a JSON list"),
    ("unknown key", {"input": [1]}, 400, r"unknown key\(s\) 'input'; allowed: images, inputs, texts, top_k"),
    ("texts to an image model", {"texts": ["hello"]}, 400, "this model takes image inputs, not texts; send images"),
    ("both keys", {"images": ["a"], "inputs": [1]}, 400, "exactly one of 'images'"),
    ("wrong shape", {"inputs": np.zeros((2, 1, 8, 7)).tolist()}, 400,
     r"'inputs' has shape \[2, 1, 8, 7\]; expected \[N, 1, 8, 8\] with 1 <= N <= 8, or one sample \[1, 8, 8\]"),
    ("ragged", {"inputs": [[[0.0] * 8] * 8, [[0.0] * 8] * 7]}, 400, "rectangular nested list of numbers"),
    ("strings", {"inputs": [[["0.1"] * 8] * 8]}, 400, r"must hold numbers \(converted to float32\); got strings"),
    ("booleans", {"inputs": [[[True] * 8] * 8]}, 400, "got booleans"),
    ("nulls", {"inputs": [[[None] * 8] * 8]}, 400, "rectangular nested list of numbers"),
    ("nan", {"inputs": np.full((1, 8, 8), np.nan).tolist()}, 400, "holds NaN or infinite values"),
    ("overflow", {"inputs": np.full((1, 8, 8), 1e39).tolist()}, 400, "beyond float32 range"),
    ("too many", {"inputs": np.zeros((9, 1, 8, 8)).tolist()}, 400, r"holds 9 samples; at most 8 per request"),
    ("too many images", {"images": ["aGk="] * 9}, 400, r"holds 9 images; at most 8 per request"),
    ("bad base64", {"images": ["***"]}, 400, r"images\[0\] is not valid base64"),
    ("not an image", {"images": [base64.b64encode(b"hello world").decode()]}, 400,
     r"images\[0\]: cannot read image: not an image Pillow can read"),
    ("image not a string", {"images": [7]}, 400, r"images\[0\] must be a base64 string"),
    ("empty images", {"images": []}, 400, "non-empty list of base64 strings"),
    ("top_k zero", {"inputs": np.zeros((1, 8, 8)).tolist(), "top_k": 0}, 400, r"'top_k' must be an int in 1\.\.10, got 0"),
    ("top_k float", {"inputs": np.zeros((1, 8, 8)).tolist(), "top_k": 2.5}, 400, "'top_k' must be an int"),
    ("oversized", {"inputs": np.zeros((8, 1, 8, 8)).tolist(), "pad": "x" * 300_000}, 413,
     r"request body is larger than the limit of 262144 bytes \(0\.25 MB, --max-body-mb\)"),
]


@pytest.mark.parametrize("name,body,status,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_json_4xx_and_the_server_keeps_serving(server, model, name, body, status, message):
    r = post(server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert re.search(message, err), err
    ok = post(server, {"inputs": model["x"][:2].tolist()})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 2


def test_wrong_routes_and_methods(server):
    r = requests.get(server + "/nope", timeout=10)
    assert r.status_code == 404 and "endpoints: GET /health, GET /metadata, POST /predict" in r.json()["error"]
    r = requests.get(server + "/predict", timeout=10)
    assert r.status_code == 405 and "method GET is not allowed here" in r.json()["error"]


def test_concurrent_requests_get_their_own_answers(server, model):
    x, ref = model["x"], model["probs"]
    rng = np.random.default_rng(0)
    jobs = []
    for _ in range(24):
        n = int(rng.integers(1, 5))
        jobs.append(rng.choice(len(x), size=n, replace=False))
    results: dict[int, np.ndarray] = {}
    errors: list[str] = []

    def worker(k: int) -> None:
        try:
            for j in range(k, len(jobs), 6):
                r = post(server, {"inputs": x[jobs[j]].tolist(), "top_k": 10})
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                results[j] = probs_of(r.json(), 10)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == len(jobs)
    for j, idx in enumerate(jobs):
        np.testing.assert_allclose(results[j], ref[idx], atol=1e-5)


# ------------------------------------------------------------------------------------------- batcher
def test_micro_batcher_batches_waiting_requests_and_splits_results():
    gate, calls = threading.Event(), []

    def fn(x):
        calls.append(x.shape[0])
        if len(calls) == 1:
            gate.wait(10)
        return x.reshape(x.shape[0], -1) * 2.0

    b = MicroBatcher(fn, max_batch_size=6)
    inputs = [np.full((n, 2), float(i), dtype=np.float32) for i, n in enumerate([1, 2, 3, 1, 2])]
    out: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, b.submit(inputs[i]))) for i in range(5)]
    threads[0].start()
    while not calls:
        time.sleep(0.01)
    for t in threads[1:]:
        t.start()
    while b._queue.qsize() < 4:  # every other request is waiting behind the blocked first batch
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(10)
    b.close()
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(out[i], x * 2.0)
    # 1 sample alone, then 2+3+1 = 6 waiting samples in one batch, then the 2 that did not fit
    assert calls[0] == 1 and sum(calls) == 9 and max(calls) <= 6 and len(calls) == 3


def test_micro_batcher_errors_reach_the_caller_and_it_keeps_running():
    def fn(x):
        if np.any(x < 0):
            raise RuntimeError("negative input")
        return x

    b = MicroBatcher(fn, max_batch_size=4)
    with pytest.raises(RuntimeError, match="negative input"):
        b.submit(-np.ones((1, 1), dtype=np.float32))
    np.testing.assert_array_equal(b.submit(np.ones((2, 1), dtype=np.float32)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="a request holds 1..4 samples, got 5"):
        b.submit(np.ones((5, 1), dtype=np.float32))
    b.close()
    with pytest.raises(RuntimeError, match="predictor thread has stopped"):
        b.submit(np.ones((1, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="max_batch_size must be an int >= 1"):
        MicroBatcher(fn, max_batch_size=0)


def test_server_argument_checks(model, tmp_path):
    with pytest.raises(ValueError, match="--port must be in 0..65535"):
        serve_command(model["dir"], port=70000)
    with pytest.raises(ValueError, match="--threads must be an int >= 1"):
        serve_command(model["dir"], threads=0)
    with pytest.raises(ValueError, match="--max-batch-size must be an int >= 1"):
        serve_command(model["dir"], max_batch_size=0)
    with pytest.raises(ValueError, match="--max-body-mb must be a number > 0"):
        create_app(model["dir"], max_body_mb=0)
    with pytest.raises(FileNotFoundError, match="has no inference.yml"):
        create_app(str(tmp_path))


def test_cli_serve_subprocess_reports_its_port_and_stops_on_sigterm(model):
    proc = subprocess.Popen([sys.executable, "-m", "robust_paddle.cli", "serve", "--model", model["dir"], "--port", "0",
                             "--threads", "2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()  # printed once the server listens
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        url = match.group(1)
        assert requests.get(url + "/health", timeout=30).json()["status"] == "ok"
        r = post(url, {"inputs": model["x"][:1].tolist(), "top_k": 10})
        np.testing.assert_allclose(probs_of(r.json(), 10), model["probs"][:1], atol=1e-5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
