"""The HTTP server: FastAPI routes over loaded models (and search indexes), micro-batched predictions, Prometheus
metrics, a Bearer key, body and queue limits, and the web page at `/`.

    POST /v1/predict   {"rows": [{input: value}, ...]} or {"inputs": {...}}, or a multipart form (one field per input)
    POST /v1/explain   one row: prediction, modality Shapley shares, attribution images (PNG data URLs)
    POST /v1/embed     rows of a contrastive model -> unit vectors per input present
    POST /v1/search    {"query": text or file, "k": 5} over an index directory served with --index
    POST /v1/generate  {"prompt": "...", "n": 1} -> PNG data URLs (text-to-image models); rows -> texts (text
                       models: speech recognition, captions, answers)
    GET  /v1/models    the models served: inputs, task, classes
    GET  /healthz, /readyz, /metrics, /docs

The server is given models through `ServedModel` (what `polymodal.load` returns), so it depends on no layer above."""
from __future__ import annotations

import asyncio
import base64
import io
import secrets
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..data.dataset import InputSpec
from ..data.table import Table
from ..errors import PolymodalError
from .batching import MicroBatcher
from .metrics import BodyLimit, Instrument, ServerMetrics
from .values import PathPolicy, Rejected, form_row, json_rows, request_value

ENDPOINTS = {"/", "/healthz", "/readyz", "/metrics", "/v1/models", "/v1/predict", "/v1/explain", "/v1/embed",
             "/v1/search", "/v1/generate"}


class ServedModel(Protocol):
    """What the server needs of a model (`polymodal.Model` is one)."""

    parts: Any
    directory: Path | None

    def predict(self, data: Any) -> list[dict] | dict: ...

    def explain(self, data: Any, index: int = 0, out: str | Path | None = None, global_: bool = False) -> dict: ...

    def generate(self, prompts: str | list[str], n: int = 1, steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, sampler: str | None = None) -> list: ...

    def info(self) -> dict: ...


@dataclass
class ServeSettings:
    api_key: str | None = None
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 1024  # rows waiting per model before 429
    max_body_mb: float = 32.0
    allow_roots: list[Path] = field(default_factory=list)
    max_generate: int = 8  # images per /v1/generate request


class Served:
    """One model behind the server: its name, inputs, batcher and task kind."""

    def __init__(self, name: str, model: ServedModel, settings: ServeSettings, executor: ThreadPoolExecutor,
                 metrics: ServerMetrics, policy: PathPolicy) -> None:
        self.name, self.model, self.policy = name, model, policy
        self.specs: list[InputSpec] = list(model.parts.inputs)
        self.task = model.parts.task.registry_name
        self.batcher = MicroBatcher(self.predict_rows, executor, settings.max_batch, settings.max_wait_ms,
                                    settings.max_queue, lambda n: metrics.batch_rows.labels(name).observe(n))

    def predict_rows(self, rows: list[dict]) -> list[dict]:
        """One prediction per row, in order (a row the model's `on_bad_input: skip` dropped says so)."""
        preds = self.model.predict(Table(rows, self.policy.base_dir, "request"))
        by_row = {p["row"]: p for p in preds}
        return [by_row.get(i, {"row": i, "error": "skipped: a value could not be read"}) for i in range(len(rows))]

    def describe(self) -> dict:
        task = self.model.parts.task
        return {"name": self.name, "task": self.task, "target": self.model.parts.recipe.target.column,
                "inputs": [{"name": s.name, "column": s.column, "modality": s.modality.registry_name}
                           for s in self.specs],
                "classes": getattr(task, "classes", None),
                "directory": str(self.model.directory) if self.model.directory else None}


class Indexed:
    """A search index directory and the embedder its vectors came from."""

    def __init__(self, name: str, index: Any, embedder: Any) -> None:
        self.name, self.index, self.embedder = name, index, embedder


def unique_names(paths: list[str]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = Path(p).name or "model"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def png_data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def create_app(models: dict[str, ServedModel], settings: ServeSettings | None = None,
               indexes: dict[str, tuple[Any, Any]] | None = None, warm: bool = True) -> Any:
    """A FastAPI app serving `models` ({name: model}) and `indexes` ({name: (VectorIndex, Embedder)})."""
    settings = settings or ServeSettings()
    if not models and not indexes:
        raise PolymodalError("nothing to serve: give at least one model directory (or --index)")
    metrics = ServerMetrics()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polymodal-model")  # one model call at a time
    policy = PathPolicy(list(settings.allow_roots))
    served = {n: Served(n, m, settings, executor, metrics, policy) for n, m in models.items()}
    searchable = {n: Indexed(n, *v) for n, v in (indexes or {}).items()}
    ready = threading.Event()

    def warm_up() -> None:
        """One prediction per model with every input missing, so the first request pays no start-up cost."""
        for s in served.values():
            if s.task != "text_to_image":
                try:
                    s.predict_rows([{}])
                except PolymodalError:
                    pass
        ready.set()

    @asynccontextmanager
    async def lifespan(_: Any):
        if warm:
            asyncio.get_running_loop().run_in_executor(executor, warm_up)
        else:
            ready.set()
        yield
        for s in served.values():
            await s.batcher.close()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="polymodal", version="1", lifespan=lifespan,
                  description="Predictions, explanations, embeddings, search and generation from polymodal models.")

    async def authorised(request: Request) -> None:
        if settings.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise Rejected("missing or wrong API key: send 'Authorization: Bearer <key>'", status=401)

    @app.exception_handler(Rejected)
    async def rejected(_: Request, e: Rejected) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else {"Retry-After": "1"} if e.status == 429 \
            else None
        return JSONResponse({"detail": str(e)}, status_code=e.status, headers=headers)

    @app.exception_handler(PolymodalError)
    async def user_error(_: Request, e: PolymodalError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=422)

    def pick(model: str | None) -> Served:
        if model is None:
            if len(served) == 1:
                return next(iter(served.values()))
            raise Rejected(f"name the model ('model'): {', '.join(served) or 'none served'}")
        if model not in served:
            raise Rejected(f"no model '{model}' (served: {', '.join(served) or 'none'})", status=404)
        return served[model]

    async def read_body(request: Request, query_model: str | None) -> tuple[Served, list[dict]]:
        """The model and the rows of a predict-like request (JSON or multipart)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            try:
                form = await request.form()
            except Rejected:
                raise
            except Exception as e:  # noqa: BLE001 - the multipart parser's errors vary
                raise Rejected(f"cannot read the form: {e}") from None
            fields: dict[str, Any] = {}
            for key, value in form.multi_items():
                if key in fields:
                    raise Rejected(f"field '{key}' is given twice")
                fields[key] = await value.read() if hasattr(value, "read") else value
            model = fields.get("model") if isinstance(fields.get("model"), str) else None
            s = pick(query_model or model)
            return s, form_row(fields, s.specs, policy)
        s, body = await json_body(request, query_model)
        return s, json_rows(body, s.specs, policy)

    async def json_body(request: Request, query_model: str | None) -> tuple[Served, Any]:
        """The model and the JSON body of a request."""
        try:
            body = await request.json()
        except Rejected:
            raise
        except Exception:  # noqa: BLE001 - any undecodable body
            raise Rejected("the body is not JSON: send application/json ({\"rows\": [...]}) or a multipart "
                           "form") from None
        model = body.get("model") if isinstance(body, dict) else None
        if model is not None and not isinstance(model, str):
            raise Rejected("'model' must be a string")
        return pick(query_model or model), body

    rows_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "properties": {
            "model": {"type": "string", "description": "which model (needed when several are served)"},
            "rows": {"type": "array", "items": {"type": "object"},
                     "description": "rows of {input: value}: text as strings, files as {\"base64\": ...} or data "
                                    "URLs, signals as lists of numbers"},
            "inputs": {"type": "object", "description": "one row, instead of 'rows'"}}}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {"model": {"type": "string"}},
                                           "additionalProperties": {"type": "string", "format": "binary"}}}}}}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if not ready.is_set():
            return JSONResponse({"status": "warming up"}, status_code=503)
        return JSONResponse({"status": "ready", "models": list(served), "indexes": list(searchable)})

    @app.get("/metrics", dependencies=[Depends(authorised)])
    async def prometheus() -> Response:
        body, kind = metrics.render()
        return Response(body, media_type=kind)

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def list_models() -> dict:
        return {"models": [s.describe() for s in served.values()],
                "indexes": [{"name": i.name, "size": len(i.index), "input": i.index.meta.get("input"),
                             "modality": i.index.meta.get("modality")} for i in searchable.values()],
                "auth": settings.api_key is not None}

    @app.post("/v1/predict", dependencies=[Depends(authorised)], openapi_extra=rows_body)
    async def predict(request: Request, model: str | None = None) -> dict:
        s, rows = await read_body(request, model)
        if s.task in ("contrastive", "text_to_image"):
            raise Rejected(f"'{s.name}' is a {s.task} model: use /v1/embed" if s.task == "contrastive" else
                           f"'{s.name}' is a text-to-image model: use /v1/generate")
        preds = await s.batcher.submit(rows)
        return {"model": s.name, "predictions": [{**p, "row": i} for i, p in enumerate(preds)]}

    @app.post("/v1/embed", dependencies=[Depends(authorised)], openapi_extra=rows_body)
    async def embed(request: Request, model: str | None = None) -> dict:
        s, rows = await read_body(request, model)
        if s.task != "contrastive":
            raise Rejected(f"'{s.name}' is a {s.task} model; embeddings come from contrastive models")
        preds = await s.batcher.submit(rows)
        return {"model": s.name, "embeddings": [{**p, "row": i} for i, p in enumerate(preds)]}

    @app.post("/v1/explain", dependencies=[Depends(authorised)], openapi_extra=rows_body)
    async def explain(request: Request, model: str | None = None) -> dict:
        s, rows = await read_body(request, model)
        if len(rows) != 1:
            raise Rejected(f"explain takes one row, got {len(rows)}")

        def run() -> dict:
            with tempfile.TemporaryDirectory(prefix="polymodal-explain-") as tmp:
                result = s.model.explain(Table(rows, policy.base_dir, "request"), 0, out=tmp)
                images = {p.stem: png_data_url(p.read_bytes()) for p in sorted(Path(tmp).glob("*.png"))}
            return {"model": s.name, "prediction": result["prediction"], "shapley": result["shapley"],
                    "shapley_share": result["shapley_share"], "attribution_totals": result["attribution_totals"],
                    "interactions": result["interactions"], "tokens": result.get("tokens", {}), "images": images}

        return await asyncio.get_running_loop().run_in_executor(executor, run)

    @app.post("/v1/generate", dependencies=[Depends(authorised)], openapi_extra=rows_body)
    async def generate(request: Request, model: str | None = None) -> dict:
        """Images for prompts from a text-to-image model ({"prompt", "n", "seed", "steps"}), or text written from
        the inputs by a text model (rows, as /v1/predict)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            s, rows = await read_body(request, model)
            body: Any = None
        else:
            s, body = await json_body(request, model)
            rows = json_rows(body, s.specs, policy) if s.task == "text" else []
        if s.task == "text":
            preds = await s.batcher.submit(rows)
            return {"model": s.name, "texts": [p["text"] for p in preds]}
        if s.task != "text_to_image":
            raise Rejected(f"'{s.name}' is a {s.task} model; /v1/generate serves text-to-image and text models")
        if not isinstance(body, dict):
            raise Rejected("the body must be a JSON object: {\"prompt\": ..., \"n\": 1}")
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise Rejected("'prompt' must be a string or a non-empty list of strings")
        n, seed, steps = body.get("n", 1), body.get("seed", 0), body.get("steps")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n * len(prompts) <= settings.max_generate:
            raise Rejected(f"'n' must be an integer with n x prompts between 1 and {settings.max_generate}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise Rejected("'seed' must be an integer in [0, 2^32)")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000):
            raise Rejected("'steps' must be an integer between 1 and 1000")

        def run() -> list[str]:
            images = s.model.generate(prompts, n=n, steps=steps, seed=seed)
            out = []
            for img in images:
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                out.append(png_data_url(buf.getvalue()))
            return out

        images = await asyncio.get_running_loop().run_in_executor(executor, run)
        return {"model": s.name, "prompts": prompts, "n": n, "images": images}

    @app.post("/v1/search", dependencies=[Depends(authorised)])
    async def search(body: dict) -> dict:
        name = body.get("index")
        if name is None:
            if len(searchable) != 1:
                raise Rejected(f"name the index ('index'): {', '.join(searchable) or 'none served (--index)'}")
            name = next(iter(searchable))
        if name not in searchable:
            raise Rejected(f"no index '{name}' (served: {', '.join(searchable) or 'none'})", status=404)
        idx = searchable[name]
        k = body.get("k", 5)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
            raise Rejected("'k' must be an integer between 1 and 1000")
        query, query_input = body.get("query"), body.get("input")
        if query is None or (query_input is not None and not isinstance(query_input, str)):
            raise Rejected("give 'query' (a text, or a file as {\"base64\": ..., \"filename\": ...}) and optionally "
                           "'input' (the model input that embeds it)")
        kind = "text" if isinstance(query, str) and not query.startswith("data:") else None
        if kind is None and query_input is None and isinstance(query, dict) and isinstance(query.get("filename"), str):
            from ..retrieval import modality_of_file

            kind = modality_of_file(query["filename"])
        input_name = idx.embedder.input_for(query_input, kind)
        value = request_value(query, idx.embedder.specs[input_name], policy, f"query, input '{input_name}'")

        def run() -> list[dict]:
            vector = idx.embedder.embed_values(input_name, [value], policy.base_dir)
            scores, positions = idx.index.search(vector, k)
            return [{"rank": i + 1, "score": round(float(sc), 6), **idx.index.items[p]}
                    for i, (sc, p) in enumerate(zip(scores[0], positions[0])) if p >= 0]

        results = await asyncio.get_running_loop().run_in_executor(executor, run)
        return {"index": name, "query_input": input_name, "results": results}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8"))

    app.add_middleware(BodyLimit, limit=int(settings.max_body_mb * 2**20))
    app.add_middleware(Instrument, metrics=metrics, endpoints=ENDPOINTS)
    app.state.served, app.state.metrics, app.state.ready = served, metrics, ready
    return app
