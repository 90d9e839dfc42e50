"""The HTTP API in-process (FastAPI's TestClient): predictions equal the Python API's, JSON and multipart agree,
every refusal has the status and message the README promises, micro-batching gathers concurrent requests and
isolates a bad one, and the metrics count what happened."""
from __future__ import annotations

import asyncio
import base64
import copy
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

import polymodal as pm
from polymodal.errors import BadInput
from polymodal.serve import Rejected, ServeSettings, create_app
from polymodal.serve.batching import MicroBatcher


def b64(path) -> dict:
    return {"base64": base64.b64encode(path.read_bytes()).decode(), "filename": path.name}


@pytest.fixture(scope="module")
def model(av_model):
    return pm.load(av_model)


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app({"avdigits": model}, ServeSettings(max_wait_ms=2))) as c:
        yield c


def test_predictions_equal_the_python_api(client, model, av_dir):
    rows = [{"image": av_dir / f"img1_{i}.png", "audio": av_dir / f"tone1_{i}.wav"} for i in range(6)]
    expected = model.predict([{k: str(v) for k, v in r.items()} for r in rows])
    r = client.post("/v1/predict", json={"rows": [{k: b64(v) for k, v in row.items()} for row in rows]})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert [p["probabilities"] for p in got] == [p["probabilities"] for p in expected]
    assert [p["row"] for p in got] == list(range(6))
    truth = [["circle", "square", "triangle"][i % 3] for i in range(6)]
    assert [p["label"] for p in got] == truth  # the model learnt the set, so the answers are right too


def test_multipart_json_and_data_url_agree(client, av_dir):
    img, wav = av_dir / "img1_1.png", av_dir / "tone1_1.wav"
    as_json = client.post("/v1/predict", json={"inputs": {"image": b64(img), "audio": b64(wav)}}).json()
    as_form = client.post("/v1/predict", files={"image": ("x.png", img.read_bytes(), "image/png"),
                                                "audio": ("x.wav", wav.read_bytes(), "audio/wav")}).json()
    url = "data:audio/wav;base64," + base64.b64encode(wav.read_bytes()).decode()
    as_url = client.post("/v1/predict", json={"inputs": {"image": b64(img), "audio": url}}).json()
    assert as_json["predictions"] == as_form["predictions"] == as_url["predictions"]
    assert as_json["predictions"][0]["label"] == "square"


def test_any_subset_of_inputs(client, model, av_dir):
    wav = av_dir / "tone1_2.wav"
    r = client.post("/v1/predict", json={"rows": [{"audio": b64(wav)}, {"audio": b64(wav), "image": None}]})
    assert r.status_code == 200
    p = r.json()["predictions"]
    assert p[0]["probabilities"] == p[1]["probabilities"] == model.predict({"audio": str(wav)})["probabilities"]


@pytest.mark.parametrize("body,status,words", [
    ({"inputs": {"colour": "red"}}, 422, ["unknown input 'colour'", "image (image)", "audio (audio)"]),
    ({"inputs": {"image": {"base64": "%%%"}}}, 422, ["row 1, input 'image'", "invalid base64"]),
    ({"inputs": {"image": {"base64": base64.b64encode(b"not a png").decode()}}}, 422,
     ["row 1, column 'image'", "cannot read image bytes"]),
    ({"inputs": {"image": {"data": 1}}}, 422, ["an object value is a file"]),
    ({"rows": []}, 422, ["non-empty list"]),
    ({"rows": [1]}, 422, ["row 1: expected an object"]),
    ({"rows": [{"image": None}]}, 422, ["row 1: no inputs given", "image, audio"]),
    ({"inputs": {}, "rows": []}, 422, ["one of 'rows'"]),
    ({"inputs": {}, "extra": 1}, 422, ["unknown field(s) extra"]),
    ({"inputs": {}, "model": "other"}, 404, ["no model 'other'", "avdigits"]),
    ({"inputs": {"image": "/etc/passwd.png"}}, 422, ["file paths are refused", "--allow-root"]),
    ([1, 2], 422, ["JSON object"]),
])
def test_bad_requests_name_the_problem(client, body, status, words):
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert all(w in detail for w in words), detail


def test_a_body_that_is_not_json(client):
    r = client.post("/v1/predict", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not JSON" in r.json()["detail"]


def test_paths_only_under_an_allowed_root(model, av_dir, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes((av_dir / "img1_0.png").read_bytes())
    (av_dir / "link.png").unlink(missing_ok=True)
    os.symlink(outside, av_dir / "link.png")
    app = create_app({"m": model}, ServeSettings(allow_roots=[av_dir]), warm=False)
    with TestClient(app) as c:
        ok = c.post("/v1/predict", json={"inputs": {"image": "img1_0.png", "audio": str(av_dir / "tone1_0.wav")}})
        assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] == "circle"
        for value in (str(outside), f"../{tmp_path.name}/outside.png", "link.png"):
            r = c.post("/v1/predict", json={"inputs": {"image": value}})
            assert r.status_code == 422 and "outside the allowed roots" in r.json()["detail"], (value, r.text)


def test_api_key(model, av_dir):
    with TestClient(create_app({"m": model}, ServeSettings(api_key="s3cret"), warm=False)) as c:
        body = {"inputs": {"audio": b64(av_dir / "tone1_0.wav")}}
        r = c.post("/v1/predict", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200


def test_body_limit_and_queue_limit(model, av_dir):
    settings = ServeSettings(max_body_mb=0.01, max_queue=1)
    with TestClient(create_app({"m": model}, settings, warm=False)) as c:
        big = {"inputs": {"image": {"base64": base64.b64encode(b"x" * 20_000).decode()}}}
        r = c.post("/v1/predict", json=big)
        assert r.status_code == 413 and "--max-body-mb" in r.json()["detail"]
        chunked = c.post("/v1/predict", content=iter([b"{" + b" " * 8000, b" " * 8000 + b"}"]),
                         headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        img = b64(av_dir / "img1_0.png")
        r = c.post("/v1/predict", json={"rows": [{"image": img}, {"image": img}]})  # 2 rows, a queue of 1
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]


def test_health_readiness_models_metrics_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    for _ in range(50):  # warm-up runs on the model thread at start
        ready = client.get("/readyz")
        if ready.status_code == 200:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert ready.json() == {"status": "ready", "models": ["avdigits"], "indexes": []}
    info = client.get("/v1/models").json()["models"][0]
    assert info["task"] == "classification" and info["classes"] == ["circle", "square", "triangle"]
    assert [i["name"] for i in info["inputs"]] == ["image", "audio"]
    client.post("/v1/predict", json={"inputs": {"colour": 1}})
    text = client.get("/metrics").text
    assert 'polymodal_requests_total{code="422",endpoint="/v1/predict"}' in text
    assert "polymodal_request_seconds_bucket" in text and "polymodal_batch_rows_bucket" in text
    schema = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/explain", "/v1/embed", "/v1/search", "/v1/generate"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_explain_gives_shares_and_attribution_images(client, model, av_dir):
    row = {"image": av_dir / "img1_0.png", "audio": av_dir / "tone1_0.wav"}
    r = client.post("/v1/explain", json={"inputs": {k: b64(v) for k, v in row.items()}})
    assert r.status_code == 200, r.text
    out = r.json()
    direct = model.explain({k: str(v) for k, v in row.items()})
    assert out["shapley"] == pytest.approx(direct["shapley"], abs=1e-6)
    assert sum(out["shapley_share"].values()) == pytest.approx(1.0)
    assert {"attr_image", "attr_audio", "shapley"} <= set(out["images"])
    png = base64.b64decode(out["images"]["attr_image"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.post("/v1/explain", json={"rows": [{}, {}]}).status_code == 422


def test_wrong_endpoint_for_the_task(client, av_dir):
    r = client.post("/v1/embed", json={"inputs": {"image": b64(av_dir / "img1_0.png")}})
    assert r.status_code == 422 and "contrastive" in r.json()["detail"]
    r = client.post("/v1/generate", json={"prompt": "x"})
    assert r.status_code == 422 and "text-to-image" in r.json()["detail"]
    r = client.post("/v1/search", json={"query": "x"})
    assert r.status_code == 422 and "--index" in r.json()["detail"]


# -- micro-batching --------------------------------------------------------------------------------------------------
def _batches(max_batch: int, max_wait_ms: float, requests: list[list[dict]]) -> tuple[list[int], list]:
    sizes: list[int] = []

    def predict(rows: list[dict]) -> list[dict]:
        if any(r.get("bad") for r in rows):
            raise BadInput("row is bad")
        return [{"echo": r["x"]} for r in rows]

    async def go():
        batcher = MicroBatcher(predict, ThreadPoolExecutor(1), max_batch, max_wait_ms, on_batch=sizes.append)
        return await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)

    return sizes, asyncio.run(go())


def test_concurrent_requests_share_a_batch():
    sizes, results = _batches(32, 50, [[{"x": i}] for i in range(8)])
    assert sizes == [8]
    assert results == [[{"echo": i}] for i in range(8)]
    sizes, _ = _batches(3, 50, [[{"x": i}] for i in range(8)])
    assert sizes == [3, 3, 2]
    sizes, _ = _batches(1, 50, [[{"x": i}] for i in range(4)])  # batching off
    assert sizes == [1, 1, 1, 1]


def test_the_wait_applies_under_load_only():
    """Idle: a lone request runs at once. Busy (the last batch held several requests): a batch waits up to
    max_wait_ms, so a request arriving 20 ms later joins it."""
    sizes: list[int] = []

    async def go():
        batcher = MicroBatcher(lambda rows: rows, ThreadPoolExecutor(1), 32, 200, on_batch=sizes.append)
        loop = asyncio.get_running_loop()
        t = loop.time()
        await batcher.submit([{}])
        alone = loop.time() - t
        await asyncio.gather(batcher.submit([{}]), batcher.submit([{}]))  # a batch of two: busy

        async def late():
            await asyncio.sleep(0.02)
            return await batcher.submit([{}])

        await asyncio.gather(batcher.submit([{}]), late())
        return alone

    alone = asyncio.run(go())
    assert alone < 0.1 and sizes == [1, 2, 2]


def test_a_bad_request_fails_alone():
    sizes, results = _batches(32, 50, [[{"x": 0}], [{"x": 1, "bad": True}], [{"x": 2}, {"x": 3}]])
    assert results[0] == [{"echo": 0}] and results[2] == [{"echo": 2}, {"echo": 3}]
    assert isinstance(results[1], BadInput)


def test_queue_full_is_429():
    async def go():
        batcher = MicroBatcher(lambda rows: rows, ThreadPoolExecutor(1), 4, 0, max_queue=3)
        with pytest.raises(Rejected) as e:
            await batcher.submit([{}] * 4)
        return e.value.status

    assert asyncio.run(go()) == 429


# -- the other tasks ------------------------------------------------------------------------------------------------
def test_embed_and_search_with_a_contrastive_model(caption_model, caption_dir, tmp_path):
    from polymodal.retrieval import ModelEmbedder, VectorIndex

    embedder = ModelEmbedder(caption_model.directory)
    table = pm.api.as_table(caption_dir / "test.jsonl")
    vectors, rows = embedder.embed_table(table, "image")
    index = VectorIndex.create(vectors, [{"row": r, "id": table.rows[r]["id"]} for r in rows],
                               {"model": str(caption_model.directory), "input": "image", "modality": "image"})
    app = create_app({"clip": caption_model}, ServeSettings(), {"shapes": (index, embedder)}, warm=False)
    with TestClient(app) as c:
        r = c.post("/v1/embed", json={"inputs": {"caption": "a red circle"}})
        assert r.status_code == 200, r.text
        got = np.asarray(r.json()["embeddings"][0]["embedding"]["caption"])
        direct = np.asarray(caption_model.predict({"caption": "a red circle"})["embedding"]["caption"])
        assert np.allclose(got, direct, atol=1e-6)
        hits = c.post("/v1/search", json={"query": "a red circle", "k": 5}).json()
        assert hits["query_input"] == "caption" and len(hits["results"]) == 5
        captions = [table.rows[h["row"]]["caption"] for h in hits["results"]]
        assert sum("circle" in cap for cap in captions) >= 3, captions
        by_image = c.post("/v1/search", json={"query": b64(caption_dir / table.rows[0]["image"]), "k": 1}).json()
        assert by_image["query_input"] == "image" and by_image["results"][0]["row"] == 0
        assert c.post("/v1/search", json={"query": "x", "k": 0}).status_code == 422
        assert c.post("/v1/predict", json={"inputs": {"caption": "x"}}).status_code == 422


def test_generate_with_a_text_to_image_model(caption_dir, tmp_path):
    from tests.tasks.test_text_to_image import T2I_RECIPE

    recipe = copy.deepcopy(T2I_RECIPE)
    recipe["training"]["epochs"] = 1
    recipe["data"] = {"train": str(caption_dir / "test.jsonl")}
    t2i = pm.fit(recipe, out=tmp_path / "t2i")
    with TestClient(create_app({"t2i": t2i}, ServeSettings(max_generate=4), warm=False)) as c:
        r = c.post("/v1/generate", json={"prompt": "a red circle", "n": 2, "seed": 3})
        assert r.status_code == 200, r.text
        from PIL import Image

        images = [Image.open(__import__("io").BytesIO(base64.b64decode(u.split(",", 1)[1])))
                  for u in r.json()["images"]]
        direct = t2i.generate(["a red circle"], n=2, seed=3)
        assert all(np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b)) for a, b in zip(images, direct))
        assert c.post("/v1/generate", json={"prompt": "x", "n": 5}).status_code == 422
        assert c.post("/v1/generate", json={"prompt": []}).status_code == 422


def test_generate_and_predict_with_a_text_model(caption_dir, tmp_path):
    """A captioner behind the server: /v1/generate (JSON or a multipart upload) writes the same text as the Python
    API; /v1/predict gives it as each prediction's `text`."""
    rec = {"data": {"train": str(caption_dir / "train.jsonl")},
           "inputs": [{"name": "image", "modality": "image", "options": {"size": 32}}],
           "target": {"column": "caption", "task": "text", "options": {"unit": "word"}},
           "model": {"dim": 32}, "training": {"epochs": 3, "batch_size": 32, "progress": False}}
    captioner = pm.fit(rec, out=tmp_path / "cap")
    path = caption_dir / "s2_0.png"
    direct = captioner.predict({"image": str(path)})["text"]
    with TestClient(create_app({"cap": captioner}, ServeSettings(), warm=False)) as c:
        r = c.post("/v1/generate", json={"inputs": {"image": b64(path)}})
        assert r.status_code == 200, r.text
        assert r.json() == {"model": "cap", "texts": [direct]}
        form = c.post("/v1/generate", files={"image": ("x.png", path.read_bytes(), "image/png")})
        assert form.json()["texts"] == [direct]
        assert c.post("/v1/predict", json={"inputs": {"image": b64(path)}}).json()["predictions"][0]["text"] == direct
        assert c.post("/v1/generate", json={"inputs": {"caption": "x"}}).status_code == 422
