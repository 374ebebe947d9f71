"""Atomic, hashed checkpoints: a folder is filled under a temporary name, its manifest (sha256 of every
file) written last, then renamed into place. Resume takes the newest one whose hashes still match.

Many processes: the weights and the shared state are the same on every rank, so rank 0 writes the folder;
each other rank first leaves its own state (its RNG, its fault memory, and under FSDP its shards of the
weights and optimizer state) in a staging folder, which rank 0 takes into the checkpoint as
`<key>.rank<r>.<ext>` under the same manifest and rename."""

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from trainguard import ranks
from trainguard.atomic import fsync_dir, write_bytes_durably
from trainguard.engine.sharding import is_sharded, local
from trainguard.errors import CheckpointError
from trainguard.models.loading import is_lora

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_to_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """safetensors refuses shared storage (tied weights): give the second and later sharers their own copy."""
    seen: set[int] = set()
    out = {}
    for name, t in tensors.items():
        t = t.detach().contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[name] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return save_safetensors({k: v.cpu() for k, v in out.items()})


def object_to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@dataclass
class Checkpoint:
    path: Path
    manifest: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.manifest["step"])

    @property
    def healthy(self) -> bool:
        return bool(self.manifest.get("healthy", True))

    def tensors(self, key: str) -> dict[str, torch.Tensor]:
        return load_safetensors((self.path / f"{key}.safetensors").read_bytes())

    def object(self, key: str) -> Any:
        return torch.load(self.path / f"{key}.pt", weights_only=True, map_location="cpu")

    def json(self, key: str) -> Any:
        return json.loads((self.path / f"{key}.json").read_text())

    def rank_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """This process's (JSON, tensor) state: `state.*`, or `state.rank<r>.*` on rank r > 0."""
        key = rank_key("state", ranks.rank())
        if not (self.path / f"{key}.json").is_file():
            raise CheckpointError(f"{self.path.name} holds no state for process {ranks.rank()} ({key}.json)")
        return self.json(key), self.object(key)


def rank_key(key: str, rank: int) -> str:
    return key if rank == 0 else f"{key}.rank{rank}"


def payloads(tensors: dict[str, dict[str, torch.Tensor]], objects: dict[str, Any], jsons: dict[str, Any]) -> dict:
    """File name -> bytes of a checkpoint's parts."""
    out = {f"{k}.safetensors": tensors_to_bytes(v) for k, v in tensors.items()}
    out |= {f"{k}.pt": object_to_bytes(v) for k, v in objects.items()}
    out |= {f"{k}.json": json.dumps(v, indent=2, sort_keys=True).encode() for k, v in jsons.items()}
    return out


def verify(path: Path) -> list[str]:
    """Problems with a checkpoint folder; empty when it is complete and every hash matches."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return ["no manifest (the write did not finish)"]
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, OSError) as err:
        return [f"unreadable manifest ({err})"]
    problems = []
    for name, meta in manifest.get("files", {}).items():
        f = path / name
        if not f.is_file():
            problems.append(f"{name}: missing")
        elif f.stat().st_size != meta["bytes"]:
            problems.append(f"{name}: {f.stat().st_size} bytes, manifest says {meta['bytes']}")
        elif sha256_file(f) != meta["sha256"]:
            problems.append(f"{name}: sha256 mismatch")
    return problems


def is_healthy(path: Path) -> bool:
    try:
        return bool(json.loads((path / MANIFEST).read_text()).get("healthy", True))
    except (OSError, json.JSONDecodeError):
        return False


class Checkpointer:
    """Writes and finds checkpoints under `root` (the run's checkpoints/ folder)."""

    def __init__(self, root: Path, keep: int | None = None) -> None:
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def remove_partial(self) -> list[str]:
        """Delete folders left by writes that were killed; returns their names."""
        stale = [p for p in self.root.iterdir() if p.name.startswith((".tmp-", ".ranks-")) or ".old-" in p.name]
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        return [p.name for p in stale]

    def save(
        self,
        step: int,
        *,
        tensors: dict[str, dict[str, torch.Tensor]],
        objects: dict[str, Any],
        jsons: dict[str, Any],
        meta: dict[str, Any],
        healthy: bool = True,
        per_rank: frozenset[str] = frozenset(),
    ) -> Checkpoint:
        """Write checkpoint `step`; on any I/O error (a full disk) the partial folder is removed and
        earlier checkpoints are untouched. With many processes every rank calls this at the same step: ranks
        > 0 hand over `objects` and `jsons` (their own state) and the `per_rank` keys of `tensors` (their
        shards), and wait for rank 0's rename."""
        name = checkpoint_name(step)
        staging = self.root / f".ranks-{name}"
        if ranks.active() and not ranks.is_main():
            own = {k: v for k, v in tensors.items() if k in per_rank}
            return self._hand_over(step, staging, payloads(own, objects, jsons))
        ranks.barrier()  # every other rank's state is in `staging`
        try:
            own = payloads(tensors, objects, jsons)
            if staging.is_dir():
                own |= {p.name: p.read_bytes() for p in sorted(staging.iterdir())}
            return self._write(step, own, meta, healthy)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            ranks.barrier()  # the checkpoint is in place (or failed) before any rank goes on

    def _hand_over(self, step: int, staging: Path, own: dict[str, bytes]) -> Checkpoint:
        staging.mkdir(exist_ok=True)
        for fname, data in own.items():
            stem, _, ext = fname.rpartition(".")
            write_bytes_durably(staging / f"{rank_key(stem, ranks.rank())}.{ext}", data)
        ranks.barrier()
        ranks.barrier()
        path = self.root / checkpoint_name(step)
        if not (path / MANIFEST).is_file():
            raise CheckpointError(f"process 0 could not write checkpoint {path.name} (see its error)")
        return Checkpoint(path, json.loads((path / MANIFEST).read_text()))

    def _write(self, step: int, files_out: dict[str, bytes], meta: dict[str, Any], healthy: bool) -> Checkpoint:
        name = checkpoint_name(step)
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        files: dict[str, dict[str, Any]] = {}
        try:
            tmp.mkdir()
            for fname, data in files_out.items():
                write_bytes_durably(tmp / fname, data)
                files[fname] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            manifest = {
                "format_version": FORMAT_VERSION,
                "step": step,
                "healthy": healthy,
                "created": time.time(),
                "files": files,
                **meta,
            }
            write_bytes_durably(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
            fsync_dir(tmp)
            final = self.root / name
            if final.exists():  # a rollback re-saves a step it already passed
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(self.root)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = self.latest_name()
            kept = f"; {previous} is intact" if previous else ""
            raise CheckpointError(f"could not write checkpoint {name}: {err.strerror or err}{kept}") from None
        self.prune()
        return Checkpoint(final, manifest)

    def candidates(self) -> list[Path]:
        """Checkpoint folders by step, newest first (complete or not)."""
        found = [p for p in self.root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)

    def latest_name(self) -> str | None:
        found = self.candidates()
        return found[0].name if found else None

    def latest(self, warn: Any = print, where: Callable[[Checkpoint], bool] | None = None) -> Checkpoint | None:
        """Newest complete, intact checkpoint that satisfies `where`; broken ones are reported via `warn`."""
        for path in self.candidates():
            problems = verify(path)
            if problems:
                warn(f"skipping checkpoint {path.name}: {'; '.join(problems)}")
                continue
            ckpt = Checkpoint(path, json.loads((path / MANIFEST).read_text()))
            if where is None or where(ckpt):
                return ckpt
        return None

    def prune(self) -> None:
        """Keep the newest `keep` checkpoints, and always the newest healthy one (the rollback target)."""
        if self.keep is None:
            return
        found = self.candidates()
        healthy = next((p for p in found if is_healthy(p)), None)
        for path in found[self.keep :]:
            if path != healthy:
                shutil.rmtree(path, ignore_errors=True)


def trainable_tensors(modules: dict[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    """Tensors to save per module: its full state (this rank's shards of a sharded one), only the adapters of a
    LoRA model (the base is rebuilt), nothing of a module that trains nothing (a frozen base)."""
    out = {}
    for key, module in modules.items():
        if is_lora(module):
            out[key] = {n: q.detach() for n, q in module.named_parameters() if q.requires_grad}
        elif any(q.requires_grad for q in module.parameters()):
            out[key] = {n: local(t) for n, t in module.state_dict().items()}
    return out


def load_trainables(ckpt: Checkpoint, modules: dict[str, nn.Module]) -> None:
    """Load each module that the checkpoint holds (LoRA adapters non-strictly: the base is not in it; a sharded
    module from this rank's shards)."""
    saved = set(ckpt.manifest.get("files", {}))
    for key, module in modules.items():
        if not is_sharded(module):
            if f"{key}.safetensors" in saved:
                _, unexpected = module.load_state_dict(ckpt.tensors(key), strict=not is_lora(module))
                if unexpected:
                    raise CheckpointError(f"{ckpt.path.name} has unknown tensors for {key}: {unexpected[:3]}")
            continue
        name = rank_key(key, ranks.rank())
        if f"{name}.safetensors" not in saved:
            raise CheckpointError(f"{ckpt.path.name} holds no shards of {key} for process {ranks.rank()} ({name})")
        shards, current = ckpt.tensors(name), module.state_dict()
        if set(shards) != set(current):
            raise CheckpointError(f"{ckpt.path.name}: {name} does not match the model's tensors")
        with torch.no_grad():
            for n, t in current.items():
                local(t).copy_(shards[n])
