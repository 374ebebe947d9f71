"""A run is a folder: resolved config, manifest, metrics store, event log, checkpoints, exports."""

import fcntl
import json
import os
import platform
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from trainguard import __version__
from trainguard.atomic import atomic_write_json, atomic_write_text
from trainguard.config import RunConfig
from trainguard.errors import RunDirError
from trainguard.track.store import MetricStore


def versions() -> dict[str, str]:
    import accelerate
    import torch
    import transformers

    return {
        "trainguard": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
    }


class RunDir:
    """Owns the folder's layout, its lock, its manifest and its event log."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.root = self.path  # the run folder (a process > 0 has its own `path` inside it)
        self.config_path = self.path / "config.yaml"
        self.manifest_path = self.path / "manifest.json"
        self.checkpoints = self.path / "checkpoints"
        self.final = self.path / "final"
        self.best = self.path / "best"
        self.eval_dir = self.path / "eval"
        self.tb = self.path / "tb"
        self.events_path = self.path / "events.jsonl"
        self._lock_file: Any = None
        self.store: MetricStore | None = None

    def stage_export(self, name: str, last: bool) -> Path:
        """Where a stage leaves its model: final/ for the last stage, exports/<name>/ otherwise."""
        return self.final if last else self.root / "exports" / name

    # -- opening ---------------------------------------------------------------------------------------
    @staticmethod
    def check_new(cfg: RunConfig, overwrite: bool) -> None:
        """Fail early (before data and model loading) when the run folder cannot be made."""
        check_writable(cfg.run.out_dir)
        path = cfg.run_dir
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise RunDirError(f"run folder {path} already exists; pass --resume to continue it or --overwrite")

    @classmethod
    def create(cls, cfg: RunConfig, overwrite: bool) -> "RunDir":
        run = cls(cfg.run_dir)
        cls.check_new(cfg, overwrite)
        run._lock()
        if run.path.exists():
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True)
        atomic_write_text(run.config_path, cfg.to_yaml())
        atomic_write_json(
            run.manifest_path,
            {
                "name": cfg.run.name,
                "seed": cfg.run.seed,
                "versions": versions(),
                "host": socket.gethostname(),
                "argv": sys.argv,
                "started": time.time(),
                "status": "running",
                "resumes": [],
            },
        )
        run._open_store()
        return run

    @classmethod
    def reopen(cls, path: Path) -> "RunDir":
        run = cls(path)
        if not run.manifest_path.is_file():
            raise RunDirError(f"{path} is not a run folder (no manifest.json)")
        run._lock()
        run._open_store()
        return run

    @classmethod
    def for_rank(cls, root: Path, rank: int) -> "RunDir":
        """Process `rank` > 0 of a many-process run: its own folder ranks/rank-<r>/ (its metrics.db, events
        and manifest: what it saw, for debugging) inside the run, whose checkpoints and exports, written by
        rank 0, it shares."""
        root = Path(root)
        run = cls(root / "ranks" / f"rank-{rank}")
        run.root, run.checkpoints, run.final, run.best = root, root / "checkpoints", root / "final", root / "best"
        run.path.mkdir(parents=True, exist_ok=True)
        if not run.manifest_path.is_file():
            atomic_write_json(run.manifest_path, {"rank": rank, "status": "running", "resumes": []})
        run._lock()
        run._open_store()
        return run

    def _lock(self) -> None:
        lock_path = self.path.parent / f".{self.path.name}.lock"
        f = open(lock_path, "w")  # noqa: SIM115  (held open for the run's lifetime; the OS frees it on kill)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RunDirError(f"run folder {self.path} is in use by another trainguard process") from None
        self._lock_file = f

    def _open_store(self) -> None:
        self.store = MetricStore(self.path / "metrics.db")

    # -- manifest and events ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text())

    def update_manifest(self, **fields: Any) -> None:
        manifest = self.manifest()
        manifest.update(fields)
        atomic_write_json(self.manifest_path, manifest)

    def event(
        self,
        kind: str,
        message: str,
        step: int | None = None,
        stage: str | None = None,
        severity: str = "info",
        **data: Any,
    ) -> None:
        """Record an event in metrics.db and events.jsonl (one JSON object per line, appended)."""
        assert self.store is not None
        self.store.event(kind, message, step, stage, severity, data)
        line = {
            "time": time.time(),
            "step": step,
            "stage": stage,
            "kind": kind,
            "severity": severity,
            "message": message,
            **data,
        }
        with open(self.events_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def alert(self, alert: dict[str, Any], stage: str | None) -> None:
        """Record an alert in metrics.db (alerts table) and events.jsonl."""
        assert self.store is not None
        self.store.alert(alert, stage)
        line = {"time": time.time(), "stage": stage, **alert, "kind": "alert", "alert": alert["kind"]}
        with open(self.events_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def close(self, status: str | None = None) -> None:
        if status is not None:
            self.update_manifest(status=status, stopped=time.time())
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".trainguard-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"run.out_dir {folder} is not writable ({err.strerror or err})") from None
