"""The web page in a real browser: `polymodal serve` runs as a separate process on loopback, Debian's chromium
(headless, driven by Playwright) opens the page, uploads an image and a wav, and reads the prediction, the class
probabilities, the input shares and the attribution images off the page."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import polymodal as pm

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by `make install`")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic",
                # a fake microphone (a beeping tone) and no permission prompt, for the recording test
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(av_model, tmp_path_factory):
    """`polymodal serve MODEL --api-key` in its own process; yields (url, key); the log is shown on failure."""
    yield from serve_process(av_model, "page-test-key", tmp_path_factory.mktemp("serve") / "serve.log")


def serve_process(model, key: str | None, log):
    """Start `polymodal serve`, yield (url, key) once it is ready, stop it when closed."""
    port = free_port()
    cmd = [sys.executable, "-m", "polymodal", "serve", str(model), "--port", str(port), "--max-wait-ms", "2"] + \
        (["--api-key", key] if key else [])
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {log.read_text()}") from None
                time.sleep(0.2)
        else:
            raise RuntimeError(f"the server did not become ready: {log.read_text()}")
        yield url, key
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module (Playwright's sync API allows one running instance at a time)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(server, browser):
    return browser.new_page()


def test_upload_predict_and_explain_in_the_browser(server, page, av_model, av_dir):
    url, key = server
    page.goto(url + "/")
    page.wait_for_selector("#auth:not([hidden])")  # the server wants a key: the page asks for it
    assert "API key" in page.inner_text("#error")
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("body[data-ready='1']")
    assert page.inner_text("#model option") == "avdigits (classification)"
    assert page.locator("#in-image").get_attribute("type") == "file"
    page.set_input_files("#in-image", str(av_dir / "img1_2.png"))
    page.set_input_files("#in-audio", str(av_dir / "tone1_2.wav"))
    page.check("#explain")
    page.click("#run")
    page.wait_for_selector("body[data-done]", timeout=60_000)
    assert page.get_attribute("body", "data-done") == "1", page.inner_text("#error")
    expected = pm.load(av_model).predict({"image": str(av_dir / "img1_2.png"), "audio": str(av_dir / "tone1_2.wav")})
    assert page.inner_text("#prediction") == expected["label"] == "triangle"
    bars = page.locator("#probabilities .bar span").all_inner_texts()
    shown = {t.split(": ")[0]: float(t.split(": ")[1]) for t in bars}
    assert shown == {c: pytest.approx(p, abs=5e-4) for c, p in expected["probabilities"].items()}
    shares = page.locator("#shares .bar span").all_inner_texts()
    assert sorted(t.split(":")[0] for t in shares) == ["audio", "image"]
    titles = page.locator("#images img").evaluate_all("els => els.map(e => e.title)")
    assert {"attr_image", "attr_audio"} <= set(titles)
    widths = page.locator("#images img").evaluate_all("els => els.map(e => e.naturalWidth)")
    assert all(w > 0 for w in widths)  # the PNGs decoded in the browser


def test_the_page_shows_a_bad_upload_as_an_error(server, page, tmp_path):
    url, key = server
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    page.goto(url + "/")
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("body[data-ready='1']")
    page.set_input_files("#in-image", str(bad))
    page.click("#run")
    page.wait_for_selector("body[data-done='error']", timeout=30_000)
    error = page.inner_text("#error")
    assert error.startswith("422: ") and "column 'image'" in error and "cannot read image bytes" in error


def test_microphone_recording_is_sent_as_wav(server, page):
    """Record from the (fake) microphone, send it: the page encodes a WAV the server reads and predicts from."""
    url, key = server
    page.goto(url + "/")
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("body[data-ready='1']")
    record = page.locator("#controls button", has_text="record")
    record.click()
    page.wait_for_selector("#controls button:has-text('stop')")
    page.wait_for_timeout(800)
    page.locator("#controls button", has_text="stop").click()
    page.wait_for_selector("#controls button:has-text('kept')", timeout=10_000)
    seconds = float(page.inner_text("#controls button:has-text('kept')").split("(")[1].split(" s")[0])
    assert 0.3 <= seconds <= 5.0
    page.click("#run")
    page.wait_for_selector("body[data-done]", timeout=30_000)
    assert page.get_attribute("body", "data-done") == "1", page.inner_text("#error")
    assert page.inner_text("#prediction") in ("circle", "square", "triangle")


def test_a_captioner_writes_its_caption_on_the_page(caption_dir, browser, tmp_path_factory):
    """A text-output model behind the page: upload a picture, read the caption it writes."""
    rec = {"data": {"train": str(caption_dir / "train.jsonl")},
           "inputs": [{"name": "image", "modality": "image", "options": {"size": 32}}],
           "target": {"column": "caption", "task": "text", "options": {"unit": "word"}},
           "model": {"dim": 32}, "training": {"epochs": 3, "batch_size": 32, "progress": False}}
    directory = tmp_path_factory.mktemp("captioner") / "m"
    expected = pm.fit(rec, out=directory).predict({"image": str(caption_dir / "s2_0.png")})["text"]
    process = serve_process(directory, None, directory.parent / "serve.log")
    url, _ = next(process)
    page = browser.new_page()
    try:
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        assert page.inner_text("#model option") == "m (text)"
        assert page.inner_text("#status") == "text of 'caption'"
        page.set_input_files("#in-image", str(caption_dir / "s2_0.png"))
        page.click("#run")
        page.wait_for_selector("body[data-done]", timeout=30_000)
        assert page.get_attribute("body", "data-done") == "1", page.inner_text("#error")
        assert page.inner_text("#prediction") == expected and expected.startswith("a ")
    finally:
        page.close()
        process.close()  # stops the server


def test_server_process_answers_http(server, av_dir):
    """The same process, called as another program would: multipart without and with the key."""
    import httpx

    url, key = server
    files = {"audio": ("t.wav", (av_dir / "tone1_0.wav").read_bytes(), "audio/wav")}
    assert httpx.post(url + "/v1/predict", files=files).status_code == 401
    r = httpx.post(url + "/v1/predict", files=files, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "circle"
