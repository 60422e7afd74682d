"""The review page's keyboard shortcuts, pressed in headless Chromium against the real review server.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages ended by NUL on
file descriptors 3 and 4), so the test needs no driver package: ``Input.dispatchKeyEvent`` produces trusted key
events exactly like a keyboard, the page's own script handles them and posts its decisions to the server, and the
test reads back ``review.jsonl``. Skipped when Debian's ``chromium`` package is missing.
"""

import json
import os
import select
import shutil
import subprocess
import time

import pytest

from robust_paddle.quality.review import REVIEW_FILE, ReviewStore, create_review_app
from tests.quality.test_review import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")


class Browser:
    """One headless Chromium page, driven over the DevTools pipe; every call times out (no hang)."""

    def __init__(self, url, profile):
        r_cmd, self._w = os.pipe()  # commands: we write, Chromium reads its fd 3
        self._r, w_ev = os.pipe()   # answers and events: Chromium writes its fd 4
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=1200,900", "about:blank"]
        # bash, not sh: dash refuses descriptor numbers above 9 in redirections
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$@" 3<&{r_cmd} 4>&{w_ev}', "bash", *args],
                                     pass_fds=(r_cmd, w_ev), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_ev)
        self._buf, self._id, self.session = b"", 0, None
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method, params=None, timeout=30.0):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer {method} in {timeout:.0f} s")
            if select.select([self._r], [], [], left)[0]:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk

    def js(self, expression):
        out = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait(self, expression, timeout=30.0):
        end = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > end:
                raise TimeoutError(f"page never satisfied {expression!r}")
            time.sleep(0.05)

    def press(self, key, modifiers=0):
        """One key stroke (keyDown with its text, keyUp); ``modifiers`` 2 = Ctrl."""
        down = {"type": "keyDown", "key": key, "modifiers": modifiers}
        if not modifiers:
            down["text"] = key
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "modifiers": modifiers})

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=10)
        finally:
            os.close(self._w)
            os.close(self._r)


PROGRESS = "document.getElementById('progress').textContent"
SELECTED = "[...document.querySelectorAll('.card')].findIndex(c => c.classList.contains('sel'))"


def test_keyboard_shortcuts_decide_move_and_page(tmp_path):
    from robust_paddle.deploy.serve import ServerHandle

    run = make_run(tmp_path)  # 30 rows, classes c0..c2; row i: given i % 3, suggested (i + 1) % 3
    handle = ServerHandle(create_review_app(run, reviewer="keys"), host="127.0.0.1", port=0).start()
    page = None
    try:
        page = Browser(handle.url + "/", tmp_path / "profile")
        page.wait("document.querySelectorAll('.card').length === 24")
        assert page.js(PROGRESS) == "0 of 30 reviewed" and page.js(SELECTED) == 0

        page.press("k")  # keep row 0, the selection moves on
        page.wait(f"{PROGRESS} === '1 of 30 reviewed'")
        assert page.js(SELECTED) == 1
        page.press("s")  # row 1: change to the suggested label (2)
        page.wait(f"{PROGRESS} === '2 of 30 reviewed'")
        page.press("0")  # row 2: change to class 0
        page.wait(f"{PROGRESS} === '3 of 30 reviewed'")
        page.press("7")  # no class 7 in a 3-class dataset: ignored
        page.press("u")  # row 3: unsure
        page.wait(f"{PROGRESS} === '4 of 30 reviewed'")
        assert page.js(SELECTED) == 4

        page.press("j")
        page.press("n")
        page.press("p")
        assert page.js(SELECTED) == 5
        page.press("k", modifiers=2)  # Ctrl+K belongs to the browser, not to the page
        page.js("document.querySelectorAll('.card select')[5].focus()")
        page.press("k")  # typing in a class list is not a shortcut
        page.js("document.activeElement.blur()")
        page.press("k")  # row 5: keep
        page.wait(f"{PROGRESS} === '5 of 30 reviewed'")
        assert page.js(SELECTED) == 6
        cards = page.js("[...document.querySelectorAll('.card')].slice(0, 6).map(c => c.className + '|' + "
                        "c.querySelector('.done').textContent)")
        assert cards == ["card keep|keep", "card change|change \u2192 c2", "card change|change \u2192 c0",
                         "card unsure|unsure", "card|", "card keep|keep"]

        page.press("]")  # next page: rows 24..29
        page.wait("document.getElementById('pageinfo').textContent.trim() === 'page 2 / 2'")
        page.wait("document.querySelectorAll('.card').length === 6")
        page.press("]")  # no page 3
        page.press("k")  # row 24: keep
        page.wait(f"{PROGRESS} === '6 of 30 reviewed'")
        page.press("[")
        page.wait("document.getElementById('pageinfo').textContent.trim() === 'page 1 / 2'")
        page.wait("document.querySelectorAll('.card').length === 24")
    finally:
        if page is not None:
            page.close()
        handle.close()

    decisions = ReviewStore(run).load()
    assert {i: (d["action"], d["label"]) for i, d in decisions.items()} == {
        0: ("keep", 0), 1: ("change", 2), 2: ("change", 0), 3: ("unsure", None), 5: ("keep", 2), 24: ("keep", 0)}
    lines = open(os.path.join(run, REVIEW_FILE), encoding="utf-8").read().splitlines()
    assert len(lines) == 6 and {json.loads(x)["reviewer"] for x in lines} == {"keys"}
