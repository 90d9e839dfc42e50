"""The model directory: config.json (resolved recipe, modality and task state), model.safetensors, tokenizer and
pretrained-config files, metrics.json. Written atomically; loading reads JSON and safetensors only (no pickle)."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from . import __version__
from .config import Recipe
from .data.dataset import InputSpec
from .encoders import ENCODERS
from .errors import PolymodalError
from .model import Member, Parts, build_net, encoder_type, join_parts, make_modality, make_task

FORMAT = "polymodal-model"
MODEL_FILES = ("config.json", "model.safetensors", "metrics.json")
MEMBERS = "members"  # a joined ensemble's member models


def save_parts(parts: Parts, directory: str | Path, metrics: dict | None = None) -> Path:
    directory = Path(directory)
    tmp = staging_dir(directory)
    config = {
        "format": FORMAT,
        "polymodal_version": __version__,
        "recipe": parts.recipe.model_dump(mode="json"),
        "inputs": {s.name: {"modality": s.modality.registry_name, "state": s.modality.state()} for s in parts.inputs},
        "task": {"name": parts.task.registry_name, "state": parts.task.state()},
    }
    if parts.members:
        config["ensemble"] = {"members": _save_members(parts, tmp), "rows": getattr(parts.net, "rows", "all")}
    else:
        _save_weights(parts, tmp)
    (tmp / "metrics.json").write_text(json.dumps(metrics or {}, indent=2))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))  # written last: its presence = complete
    swap_in(tmp, directory)
    return directory


def _save_weights(parts: Parts, tmp: Path) -> None:
    for spec in parts.inputs:
        spec.modality.save_files(tmp, f"{spec.name}.")
        if spec.name in parts.net.encoders:  # a generated input has no encoder
            parts.net.encoders[spec.name].encoder.save_files(tmp, f"{spec.name}.")
    parts.task.save_files(parts.net, tmp)
    state, seen = {}, set()
    for k, v in parts.net.state_dict().items():  # tied weights (an embedding and its output layer) saved apart
        v = v.detach().cpu().contiguous()
        key = v.untyped_storage().data_ptr()
        state[k] = v.clone() if key in seen and v.numel() else v
        seen.add(key)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": FORMAT})


def _save_members(parts: Parts, tmp: Path) -> list[dict]:
    """A joined ensemble: each member a whole model directory under members/K (the config lists them and the inputs
    each reads; the ensemble's own task state holds its search or threshold); no weights of its own."""
    assert parts.members is not None
    listed = []
    for k, member in enumerate(parts.members):
        save_parts(member.parts, tmp / MEMBERS / str(k), member.metrics)
        listed.append({"directory": f"{MEMBERS}/{k}", "reads": list(member.reads) if member.reads else None,
                       "source": member.source})
    return listed


def staging_dir(directory: Path) -> Path:
    """An empty folder beside `directory` to write a new version into (then `swap_in`)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.*-*"):  # left by a process killed mid-save
        kind, _, pid = stale.name.rpartition("-")
        if kind.endswith((".saving", ".old")) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = directory.parent / f".{directory.name}.saving-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def swap_in(tmp: Path, directory: Path) -> None:
    """Replace `directory` by `tmp`, keeping whatever else lives there (checkpoints, logs: hard-linked into `tmp`
    first). The files are flushed to disk; then, on Linux, the two folders are exchanged in one atomic step
    (renameat2 RENAME_EXCHANGE), so at every moment `directory` is either the previous complete model or the new
    one, checkpoints included. Elsewhere two renames leave a moment without it (a crash then leaves the previous
    version beside it, as `.NAME.old-PID`)."""
    if directory.exists():  # what lives beside the model (checkpoints, logs) is linked into the new version first,
        for entry in directory.iterdir():  # so the path has it at every moment, whatever happens next
            if not (tmp / entry.name).exists() and not _is_model_file(entry.name):
                _link_tree(entry, tmp / entry.name)
    _sync_tree(tmp)
    if not directory.exists():
        os.replace(tmp, directory)
        return
    if _exchange(tmp, directory):
        old = tmp  # the exchange put the previous version here
    else:
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        os.replace(directory, old)
        os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links of a file or a folder's files (a copy where links cannot be made)."""
    if src.is_dir() and not src.is_symlink():
        dst.mkdir()
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where the system cannot."""
    if sys.platform != "linux":
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _is_model_file(name: str) -> bool:
    return name in (*MODEL_FILES, MEMBERS) or name.endswith(("tokenizer.json", "tokenizer", "pretrained", "whisper"))


def read_config(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise PolymodalError(f"{directory}: not a polymodal model directory (no config.json)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PolymodalError(f"{path}: corrupt config: {e}") from None
    if config.get("format") != FORMAT:
        raise PolymodalError(f"{path}: not a polymodal model config")
    return config


def load_parts(directory: str | Path) -> Parts:
    directory = Path(directory)
    config = read_config(directory)
    if "ensemble" in config:
        return _load_joined(directory, config)
    recipe = Recipe.model_validate(config["recipe"])
    inputs = []
    for cfg in recipe.inputs:
        modality = make_modality(cfg.name, cfg.modality, cfg.options)
        modality.load_state(config["inputs"][cfg.name]["state"])
        modality.load_files(directory, f"{cfg.name}.")
        inputs.append(InputSpec(cfg.name, cfg.source, modality))
    task = make_task(recipe)
    task.load_files(directory)
    task.load_state(config["task"]["state"])
    # encoders that need files beside the weights (pretrained configs) rebuild from this directory
    build = recipe.model_copy(deep=True)
    for cfg, spec in zip(build.inputs, inputs):
        cls = ENCODERS.get(encoder_type(spec.modality, cfg.encoder))
        cfg.encoder = cls.for_loading(dict(cfg.encoder), directory, f"{cfg.name}.")
    net = build_net(build, inputs, task)
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise PolymodalError(f"{directory}: no model.safetensors")
    state = load_file(str(weights))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise PolymodalError(f"{weights}: weights do not match the architecture in config.json "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    return Parts(recipe, inputs, task, net)


def _load_joined(directory: Path, config: dict) -> Parts:
    members = []
    listed = config["ensemble"].get("members")
    if not isinstance(listed, list) or not listed:
        raise PolymodalError(f"{directory / 'config.json'}: an ensemble with no members listed")
    for k, entry in enumerate(listed):
        where = (directory / str(entry.get("directory", ""))).resolve()
        if not where.is_relative_to(directory.resolve() / MEMBERS) or where == directory.resolve() / MEMBERS:
            raise PolymodalError(f"{directory / 'config.json'}: member {k} lies outside {directory / MEMBERS}")
        reads = entry.get("reads")
        members.append(Member(load_parts(where), tuple(reads) if reads else None, read_metrics(where),
                              str(entry.get("source") or where)))
    rows = config["ensemble"].get("rows", "all")  # (saved before `rows` existed: all)
    try:
        return join_parts(members, config["task"]["state"], rows)
    except PolymodalError as e:
        raise PolymodalError(f"{directory / 'config.json'}: {e}") from None


def read_metrics(directory: str | Path) -> dict:
    path = Path(directory) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}
