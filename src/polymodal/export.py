"""Export a model's network for deployment without polymodal's training stack: torch.export (`.pt2`) or ONNX (the
dynamo exporter). Classification, multilabel, regression and contrastive (embedding) models, with a fixed set of
inputs all present in every row. The graph takes each input's features as polymodal collates them (an image as
[B, C, H, W] floats in 0..1, audio as normalised log-mel [B, T, M] plus its [B, T] mask, text as token ids plus
mask, ...); `export.json` beside it lists the tensors in order with their shapes and dtypes, and `features()` makes
them from raw rows with the model's own modalities. The batch dimension (and a time dimension) is dynamic.
Parity with the eager network and latency are measured on the example rows."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .data import InputSpec, Table, as_table, read_inputs
from .data.batching import collate_input
from .errors import PolymodalError
from .model import Parts
from .types import ModalityBatch

Format = Literal["torch", "onnx"]
EXPORTABLE = ("classification", "multilabel", "regression", "contrastive")


class TensorsIn(nn.Module):
    """The network with plain tensors in: per input its data (and its mask where it has one), every row present."""

    def __init__(self, net: nn.Module, names: list[str], masked: dict[str, bool]) -> None:
        super().__init__()
        self.net, self.names, self.masked = net, names, masked

    def forward(self, *tensors: Tensor) -> Tensor:
        batch, i = {}, 0
        for name in self.names:
            data = tensors[i]
            mask = tensors[i + 1] if self.masked[name] else None
            i += 2 if self.masked[name] else 1
            rows = data.shape[0]
            batch[name] = ModalityBatch(data, mask, torch.ones(rows, dtype=torch.bool, device=data.device),
                                        torch.arange(rows, device=data.device))
        return self.net(batch)


def _specs(parts: Parts, inputs: list[str] | None) -> list[InputSpec]:
    encoded = set(getattr(parts.net, "encoders", {}).keys())
    specs = [s for s in parts.inputs if s.name in encoded]
    if inputs:
        unknown = [n for n in inputs if n not in {s.name for s in specs}]
        if unknown:
            raise PolymodalError(f"--inputs: {', '.join(unknown)} not among the model's inputs "
                                 f"({', '.join(s.name for s in specs)})")
        specs = [s for s in specs if s.name in inputs]
    if not specs:
        raise PolymodalError("nothing to export: the model encodes no inputs")
    return specs


def features(parts: Parts, rows: Any, inputs: list[str] | None = None) -> tuple[list[str], list[Tensor]]:
    """Raw rows (a table, a list of dicts) -> the exported graph's tensors, in order, read by the model's modalities.
    Every row must have every exported input."""
    specs = _specs(parts, inputs)
    table = as_table(rows) if not isinstance(rows, Table) else rows
    read = read_inputs(table, specs, None, None, "error", require_target=False, show_progress=False)
    names, tensors = [], []
    for s in specs:
        ids = np.asarray(read.ids[s.name])
        if (ids < 0).any():
            r = int(read.rows[int(np.argmax(ids < 0))]) + 1
            raise PolymodalError(f"{table.source}, row {r}: an exported model needs every input; "
                                 f"'{s.column}' is empty")
        _append(names, tensors, s.name, collate_input(s.modality, ids, read.items[s.name]))
    return names, tensors


def _append(names: list[str], tensors: list[Tensor], name: str, batch: ModalityBatch) -> None:
    """One input's tensors, one row each: its data, and its mask where it has one."""
    names.append(name)
    tensors.append(batch.data[batch.index])
    if batch.mask is not None:
        names.append(f"{name}_mask")
        tensors.append(batch.mask[batch.index])


def _placeholder_rows(specs: list[InputSpec], n: int = 2) -> tuple[list[str], list[Tensor]]:
    names, tensors = [], []
    for s in specs:
        _append(names, tensors, s.name, collate_input(s.modality, np.zeros(n, dtype=np.int64),
                                                     [s.modality.placeholder()]))
    return names, tensors


def export_model(parts: Parts, out: str | Path, fmt: Format = "torch", data: Any = None,
                 inputs: list[str] | None = None, rows: int = 8) -> dict:
    """Write the exported network into `out` (model.pt2 or model.onnx, and export.json); return the report:
    parity (max |difference| against the eager network on the example rows) and latency per batch."""
    task = parts.task.registry_name
    if task not in EXPORTABLE:
        raise PolymodalError(f"export covers {', '.join(EXPORTABLE)} models; this one is {task}")
    if fmt not in ("torch", "onnx"):
        raise PolymodalError(f"--format {fmt}: choose torch or onnx")
    if parts.members:
        raise PolymodalError("a joined ensemble (polymodal ensemble) is not one graph: export each member "
                             "(MODEL/members/K) and average their outputs, or serve the joined model")
    specs = _specs(parts, inputs)
    if data is not None:
        table = as_table(data)
        table = Table(table.rows[:rows], table.base_dir, table.source)
        names, example = features(parts, table, [s.name for s in specs])
    else:
        names, example = _placeholder_rows(specs)
    masked = {s.name: f"{s.name}_mask" in names for s in specs}
    parts.net.eval()
    module = TensorsIn(parts.net, [s.name for s in specs], masked).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic: list[dict] = []
    for name, t in zip(names, example):
        dims: dict[int, Any] = {0: batch}
        base = name[:-5] if name.endswith("_mask") else name
        if masked.get(base) and t.dim() >= 2:
            dims[1] = torch.export.Dim.AUTO
        dynamic.append(dims)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        eager = module(*example)
        try:
            program = torch.export.export(module, tuple(example), dynamic_shapes={"tensors": tuple(dynamic)})
        except Exception as e:  # noqa: BLE001 - torch.export's many error types; the user gets one line
            raise PolymodalError(f"torch.export could not trace this model: {str(e).splitlines()[0]}") from None
    report: dict[str, Any] = {"format": fmt, "task": task, "rows": int(example[0].shape[0]),
                              "inputs": [{"name": n, "shape": list(t.shape),
                                          "dtype": str(t.dtype).replace("torch.", "")} for n, t in zip(names, example)],
                              "output_shape": list(eager.shape)}
    if fmt == "torch":
        path = out / "model.pt2"
        torch.export.save(program, str(path))
        loaded = torch.export.load(str(path)).module()
        with torch.no_grad():
            got = loaded(*example)
        report["max_abs_diff"] = float((got - eager).abs().max())
        report["latency_ms"] = {"eager": _time(lambda: module(*example)), "exported": _time(lambda: loaded(*example))}
    else:
        path = out / "model.onnx"
        try:
            onnx_program = torch.onnx.export(program, tuple(example), dynamo=True, input_names=names,
                                             output_names=["output"], verbose=False)
            onnx_program.save(str(path))
        except ImportError as e:
            raise PolymodalError(f"ONNX export needs the export extra: pip install 'polymodal[export]' ({e})") \
                from None
        report.update(_onnx_check(path, names, example, eager))
        report["latency_ms"]["eager"] = _time(lambda: module(*example))
    report["file"] = path.name
    meta = {**report, "classes": getattr(parts.task, "classes", None),
            "output": _output_meaning(parts, specs),
            "features": "polymodal.export.features(parts, rows) makes the input tensors from raw rows"}
    (out / "export.json").write_text(json.dumps(meta, indent=2))
    return meta


def _output_meaning(parts: Parts, specs: list[InputSpec]) -> str:
    task = parts.task.registry_name
    if task == "classification":
        return "logits [B, classes] (softmax for probabilities)"
    if task == "multilabel":
        return "logits [B, labels] (sigmoid for probabilities)"
    if task == "regression":
        return "[B, outputs] in the model's normalised target scale (polymodal's decode maps it back)"
    return f"embeddings [B, inputs, E] in the order {[s.name for s in parts.inputs]} (zeros for inputs not given)"


def _onnx_check(path: Path, names: list[str], example: list[Tensor], eager: Tensor) -> dict:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"max_abs_diff": None, "latency_ms": {}, "note": "onnxruntime not installed: parity not checked"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {n: t.numpy() for n, t in zip(names, example) if n in {i.name for i in session.get_inputs()}}
    got = session.run(None, feed)[0]
    return {"max_abs_diff": float(np.abs(got - eager.numpy()).max()),
            "latency_ms": {"onnxruntime": _time(lambda: session.run(None, feed))}}


def _time(fn, repeat: int = 20) -> float:
    with torch.no_grad():
        fn()
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return round(float(np.median(times)) * 1000, 3)
