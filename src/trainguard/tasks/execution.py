"""What the program tasks share: answers are checked by running programs in the sandbox, and instances may
come from a local JSONL or Parquet file instead of the generator."""

import functools
from pathlib import Path
from typing import Any

from pydantic import Field

from trainguard.rows import read_rows
from trainguard.sandbox import ExecResult, shared_pool
from trainguard.tasks.base import Task, TaskConfig


class ProgramTaskConfig(TaskConfig):
    difficulty: int | tuple[int, int] = Field(
        (1, 5), description="Generator difficulty 1–5: a number, or [low, high] drawn per instance."
    )
    path: str | None = Field(None, description="Local JSONL or Parquet file to draw instances from instead.")
    timeout: float = Field(
        1.0, gt=0, le=60, description="Seconds each program may run in the sandbox (references need milliseconds)."
    )


class ProgramTask(Task):
    config: ProgramTaskConfig
    required: tuple[str, ...] = ()  # fields a file row must have

    def check_row(self, row: Any) -> str | None:
        if not isinstance(row, dict):
            return "not a JSON object"
        missing = [key for key in self.required if row.get(key) is None]
        return f"missing '{missing[0]}'" if missing else None

    @functools.cached_property
    def rows(self) -> list[dict[str, Any]]:
        assert self.config.path is not None
        rows, _report = read_rows(Path(self.config.path), self.check_row)
        return rows

    def row(self, id: int) -> dict[str, Any]:
        return self.rows[id % len(self.rows)]

    def difficulty(self, id: int) -> int:
        value = self.config.difficulty
        return value if isinstance(value, int) else self.rng(id).randint(*value)

    def execute(self, jobs: list[tuple[str, str]]) -> list[ExecResult]:
        return shared_pool().map(jobs, timeout=self.config.timeout)
