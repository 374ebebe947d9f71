"""Where training records come from: generated task instances or JSONL files, and the held-out split."""

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from trainguard.section import Section
from trainguard.tasks import TASKS


class TaskSource(Section):
    task: str = Field(description="Registered task that generates records from integer ids.")
    n: int = Field(gt=0, description="Number of records (ids start .. start+n-1).")
    start: int = Field(0, ge=0, description="First instance id.")
    params: dict[str, Any] = Field(default_factory=dict, description="The task's own parameters.")
    noise: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of records whose completion is a verified-wrong answer (a weak teacher's demonstrations).",
    )

    @field_validator("task", mode="before")
    @classmethod
    def _our_name(cls, task: Any) -> Any:
        """The Affine guide's spelling (`affine:sat`) names our task (`sat`)."""
        from trainguard.errors import ConfigError
        from trainguard.tasks.aliases import canonical

        try:
            return canonical(task) if isinstance(task, str) else task
        except ConfigError as err:
            raise ValueError(str(err)) from None

    @model_validator(mode="after")
    def _known_task(self) -> "TaskSource":
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; allowed: {', '.join(TASKS.names())}")
        TASKS.get(self.task).Config.model_validate(self.params)
        return self


class FileSource(Section):
    path: Path = Field(
        description="JSONL or Parquet file of {prompt, completion} records; a relative path is read from the "
        "config file's folder (then the working folder)."
    )

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        if not path.is_file():
            where = "relative paths: the config file's folder, then the working folder"
            raise ValueError(f"data file {str(path)!r} not found ({where})")
        return path


def _source_kind(value: Any) -> str:
    is_file = isinstance(value, FileSource) or (isinstance(value, dict) and "path" in value)
    return "file" if is_file else "task"


DataSource = Annotated[
    Union[Annotated[TaskSource, Tag("task")], Annotated[FileSource, Tag("file")]],  # noqa: UP007
    Discriminator(_source_kind),
]


class DataSection(Section):
    sources: list[DataSource] = Field(
        min_length=1, description="Record sources, concatenated: {task, n, start, params} or {path}."
    )
    eval_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of records held out for eval loss (default 90/10)."
    )
    chat: bool = Field(
        False,
        description="Render every record through the tokenizer's chat template, loss on assistant turns only: "
        "{messages: [{role, content}, ...]} rows, and {prompt, completion} as one user and one assistant turn.",
    )
