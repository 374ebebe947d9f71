"""`trainguard inspect`: a checkpoint's contents, shapes and hash verification, on one screen."""

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from trainguard.engine.checkpoint import MANIFEST, Checkpoint, Checkpointer, sha256_file
from trainguard.errors import CheckpointError


def describe_checkpoint(path: Path, console: Console) -> bool:
    """Print the checkpoint (a run folder means its newest one) and return whether every file matches its
    manifest hash."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        newest = Checkpointer(path / "checkpoints").latest_name()
        if newest is None:
            raise CheckpointError(f"{path} is a run folder without checkpoints yet")
        path = path / "checkpoints" / newest
    if not (path / MANIFEST).is_file():
        raise CheckpointError(f"{path} has no {MANIFEST}: not a checkpoint, or its write did not finish")
    manifest = json.loads((path / MANIFEST).read_text())
    ckpt = Checkpoint(path, manifest)
    console.print(
        f"[bold]{path}[/]  step {manifest['step']}  stage {manifest.get('stage')}  healthy {manifest.get('healthy')}"
    )
    files = Table("file", "bytes", "sha256", "verified")
    ok = True
    for name, meta in sorted(manifest["files"].items()):
        f = path / name
        good = f.is_file() and sha256_file(f) == meta["sha256"]
        ok &= good
        files.add_row(name, f"{meta['bytes']:,}", meta["sha256"][:16], "[green]ok[/]" if good else "[red]MISMATCH[/]")
    console.print(files)
    if not ok:
        console.print("[red]verification failed[/]: this checkpoint will be skipped on resume")
        return False
    for name in manifest["files"]:
        if name.endswith(".safetensors"):
            tensors = ckpt.tensors(name.removesuffix(".safetensors"))
            n = sum(t.numel() for t in tensors.values())
            console.print(f"{name}: {len(tensors)} tensors, {n:,} values")
    state, tensors = ckpt.json("state"), ckpt.object("state")
    console.print(f"train state: {json.dumps(state['train'])}")
    console.print(f"source: {json.dumps(state.get('source'))}")
    for key in sorted(set(state) - {"train", "source", "guard"}):
        console.print(f"{key}: {json.dumps(state[key])[:200]}")
    opt = tensors["optimizer"]
    groups = [f"{g.get('module', '?')} {g['lr']:.3g}" for g in opt["param_groups"]]
    console.print(f"optimizer: {len(opt['state'])} parameter states, {len(groups)} groups, lr {groups}")
    console.print(f"rng: {', '.join(tensors['rng'])}")
    return True
