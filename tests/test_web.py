"""The web page in headless Chromium (Debian's), driven over the DevTools protocol through
--remote-debugging-pipe (no extra package): upload a clip, ask, watch the reasoning and the answer stream
in, record from Chromium's fake microphone, and take a screenshot (written to docs/img/web.png only when
AUDIOR1_UPDATE_SCREENSHOT=1, so a test run never changes tracked files)."""

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from audior1.engine import Engine, SamplingParams
from audior1.server import ServerConfig, create_app, load_engine
from test_engine import tiny_checkpoint, tone
from test_server import LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "web.png"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (apt-get install chromium)")


class Chromium:
    """Headless Chromium speaking CDP over fds 3/4: JSON messages separated by NUL bytes."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--mute-audio",
             "--remote-debugging-pipe"]

    def __init__(self, profile: Path):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        # bash puts our pipe ends on fds 3 and 4, where --remote-debugging-pipe expects them (dash cannot
        # redirect from fds above 9).
        script = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self.proc = subprocess.Popen([shutil.which("bash") or "/bin/bash", "-c", script, CHROMIUM, *self.FLAGS, f"--user-data-dir={profile}",
                                      "about:blank"], pass_fds=(to_browser, from_browser),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read(self, timeout: float) -> dict | None:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], timeout)
            if not ready:
                return None
            data = os.read(self._from_browser, 1 << 20)
            if not data:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += data
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read(deadline - time.monotonic())
            if reply is None:
                break
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(f"{method}: no reply from chromium in {timeout} s")

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            reply = self._read(deadline - time.monotonic())
            if reply is not None:
                self.events.append(reply)
        raise TimeoutError(f"no {method} event in {timeout} s")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


class Page:
    def __init__(self, browser: Chromium):
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1000, "height": 1000, "deviceScaleFactor": 1,
                                                         "mobile": False})

    def call(self, method, params=None, timeout=30):
        return self.browser.call(method, params, self.session, timeout)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired")

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{expression} stayed false for {timeout} s; page status: {self.js(STATUS)!r}")

    def set_files(self, selector: str, paths: list[str]) -> None:
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        self.call("DOM.setFileInputFiles", {"files": paths, "nodeId": node})


STATUS = "document.getElementById('status').textContent"
ANSWER = "document.getElementById('answer').textContent"
REASONING = "document.getElementById('reasoning').textContent"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    config = ServerConfig(model_name="audior1-tiny", max_tokens=64)
    engine, config = load_engine(tiny_checkpoint(tmp_path_factory), config)
    engine.model.init_weights(seed=1, std=0.1)
    with LiveServer(create_app(engine, config)) as live:
        live.reference = Engine(engine.model, engine.processor)
        yield live


def fill_and_ask(page: Page, question: str) -> None:
    page.js(f"""(() => {{
        document.getElementById('options').open = true;
        document.getElementById('question').value = {json.dumps(question)};
        document.getElementById('budget').value = '12';
        document.getElementById('max-tokens').value = '48';
        document.getElementById('temperature').value = '0';
        document.getElementById('ask').click();
    }})()""")
    page.wait_for(f"{STATUS}.startsWith('done')")


def test_upload_ask_stream_and_record(site, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(tone(2.0, 523.25))
    browser = Chromium(tmp_path / "profile")
    try:
        page = Page(browser)
        page.goto(site.url + "/")
        page.wait_for("document.getElementById('model').textContent.startsWith('model audior1-tiny')")
        page.set_files("#file", [str(clip)])
        page.wait_for("document.getElementById('audio-name').textContent.includes('clip.wav')")
        question = "Which note is this?"
        fill_and_ask(page, question)
        answer, reasoning = page.js(ANSWER), page.js(REASONING)
        # The page shows exactly what the engine answers for the same request.
        messages = [{"role": "user", "content": [
            {"type": "text", "text": question},
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip.read_bytes()).decode()}}]}]
        [want] = site.reference.generate([messages], SamplingParams(temperature=0, max_tokens=48, max_think_tokens=12,
                                                                    top_p=0.9, skip_special_tokens=True))[0]
        assert want.answer and (reasoning, answer) == (want.reasoning, want.answer)
        assert page.js("document.getElementById('reasoning-box').open") is True
        assert "reasoning" in page.js("document.getElementById('usage').textContent")
        shot = base64.b64decode(page.call("Page.captureScreenshot", {"format": "png"})["data"])
        assert shot.startswith(b"\x89PNG")
        if os.environ.get("AUDIOR1_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.write_bytes(shot)

        # Record ~1 s from Chromium's fake microphone (MediaRecorder), then ask about the recording.
        page.js("document.getElementById('record').click()")
        page.wait_for("document.getElementById('record').textContent.includes('Stop')", timeout=20)
        time.sleep(1.2)
        page.js("document.getElementById('record').click()")
        name = page.wait_for("(t => t.startsWith('recording (') && t)(document.getElementById('audio-name').textContent)",
                             timeout=20)
        assert name.endswith(", wav)")  # the browser's webm/opus was decoded and sent as 16 kHz WAV
        fill_and_ask(page, "What did I record?")
        assert page.js(ANSWER) and "error" not in page.js("document.getElementById('answer').className")
    finally:
        browser.close()
