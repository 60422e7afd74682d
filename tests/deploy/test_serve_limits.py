"""The server's resource bounds (issue 15): decoded-pixel budget, JSON nesting depth, bounded concurrency
(``/health`` keeps a free thread), Pillow's bomb guard, and the one-line startup error for a bad model folder.
The memory bound under the issue's load (4 concurrent requests x 8 blank 9000x9000 PNGs) is asserted on the
server process's peak RSS; benchmarks/server_limits.py prints the same numbers with /health latencies."""

import base64
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
import requests
from _export_runs import exported
from PIL import Image

from robust_paddle.deploy.predictor import PixelBudgetError, decode_image, load_model_info, preprocess_images
from robust_paddle.deploy.serve import MAX_JSON_DEPTH, ServerHandle, close_app, create_app, json_depth


def blank_png(width: int, height: int) -> bytes:
    """A black 8-bit grey PNG written row by row (the test never holds the decoded pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, row, parts = zlib.compressobj(9), b"\0" * (width + 1), []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    _, out, _ = exported(tmp_path_factory, "small_cnn")
    return out


@pytest.fixture(scope="module")
def bomb_body():
    png = base64.b64encode(blank_png(9000, 9000)).decode()
    return json.dumps({"images": [png] * 8})


def png8(value: int = 0) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_json_depth_counts_brackets_outside_strings():
    assert json_depth(b'{"a": [[1, 2], [3]]}') == 3
    assert json_depth(b'{"a": "[[[[{{{{", "b": "\\"[["}') == 1
    assert json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000
    assert json_depth(b"7") == 0


def test_pixel_budget_is_checked_on_headers_before_decoding(model):
    info = load_model_info(model)
    blob = blank_png(9000, 9000)
    with pytest.raises(PixelBudgetError, match=r"648\.0 megapixels; at most 16 megapixels per request"):
        preprocess_images([blob] * 8, info, max_pixels=16_000_000)
    small = base64.b64decode(png8())
    assert preprocess_images([small] * 3, info, max_pixels=192).shape == (3, 1, 8, 8)
    with pytest.raises(PixelBudgetError):
        preprocess_images([small] * 4, info, max_pixels=192)


def test_pillow_bomb_guard_refuses_images_over_its_limit(monkeypatch, model):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    blob = blank_png(40, 40)  # 1600 pixels: Pillow alone would only warn (its error starts at 2x the limit)
    with pytest.raises(ValueError, match="image: cannot read image: DecompressionBombWarning"):
        decode_image(blob, channels=1, size=(8, 8))
    with pytest.raises(ValueError, match=r"images\[0\]: cannot read image: DecompressionBombWarning"):
        preprocess_images([blob], load_model_info(model), max_pixels=10**9)


@pytest.fixture(scope="module")
def server(model):
    app = create_app(model, max_batch_size=8, max_body_mb=4.0, max_megapixels=16, decode_workers=1,
                     max_requests=2)
    handle = ServerHandle(app, port=0, threads=3, max_body_bytes=4 * 1024 * 1024).start()
    yield handle.url, app
    handle.close()
    close_app(app)


def post(url, data):
    return requests.post(url + "/predict", data=data, headers={"Content-Type": "application/json"}, timeout=60)


def test_deep_json_gets_400_not_a_recursion_error(server):
    url, _ = server
    r = post(url, "[" * 100_000 + "]" * 100_000)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == (f"the body nests JSON 100000 levels deep; at most {MAX_JSON_DEPTH} levels "
                                 "are allowed")
    r = post(url, "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)  # at the limit: parsed, then refused as not an object
    assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]
    ok = post(url, json.dumps({"images": [png8()]}))
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


def test_over_budget_request_gets_413_and_metadata_states_the_limits(server, bomb_body):
    url, _ = server
    r = post(url, bomb_body)
    assert r.status_code == 413, r.text
    assert "648.0 megapixels; at most 16 megapixels per request (--max-megapixels)" in r.json()["error"]
    limits = requests.get(url + "/metadata", timeout=10).json()["limits"]
    assert limits["max_pixels_per_request"] == 16_000_000 and limits["max_json_depth"] == MAX_JSON_DEPTH


def test_busy_server_answers_503_while_health_still_answers(server):
    url, app = server
    admission = app.extensions["robust_paddle"]["admission"]
    assert admission.acquire(blocking=False) and admission.acquire(blocking=False)  # both request slots taken
    try:
        r = post(url, json.dumps({"images": [png8()]}))
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert "2 requests in progress, --max-requests" in r.json()["error"]
        assert requests.get(url + "/health", timeout=10).json()["status"] == "ok"
    finally:
        admission.release()
        admission.release()
    assert post(url, json.dumps({"images": [png8()]})).status_code == 200


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def test_issue_load_keeps_server_memory_bounded_and_health_answering(model, bomb_body):
    """4 concurrent requests of 8 blank 9000x9000 PNGs against `robust-paddle serve` with default limits:
    every request is refused (413, or 503 beyond --max-requests), the peak RSS grows by < 300 MB, and
    /health answers 200 during the load and after it."""
    proc = subprocess.Popen([sys.executable, "-m", "robust_paddle.cli", "-q", "serve", "--model", model, "--port",
                             "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip().rsplit(" at ", 1)[1]
        assert post(url, json.dumps({"images": [png8()]})).status_code == 200
        before = _peak_rss_mb(proc.pid)
        codes, health = [], []

        def client():
            codes.append(post(url, bomb_body).status_code)

        clients = [threading.Thread(target=client) for _ in range(4)]
        for t in clients:
            t.start()
        health.append(requests.get(url + "/health", timeout=30).status_code)
        for t in clients:
            t.join(60)
        health.append(requests.get(url + "/health", timeout=30).status_code)
        grown = _peak_rss_mb(proc.pid) - before
        assert sorted(set(codes)) in ([413], [413, 503]) and len(codes) == 4 and 413 in codes
        assert health == [200, 200]
        assert grown < 300, f"peak RSS grew by {grown:.0f} MB"
    finally:
        proc.terminate()
        proc.wait(30)


def test_cli_bad_model_folder_is_one_line_exit_2(model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    for name in os.listdir(broken):
        if name.startswith("inference.pd"):
            (broken / name).write_bytes(b"not a paddle model")
    for folder, message in [(str(broken), "Paddle Inference cannot load the exported model"),
                            (str(tmp_path / "missing"), "model folder not found")]:
        res = subprocess.run([sys.executable, "-m", "robust_paddle.cli", "serve", "--model", folder, "--port", "0"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("robust-paddle")]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, res.stderr
