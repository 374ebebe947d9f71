"""Tasks whose answers a program can check; importing this package registers them all."""

from trainguard.tasks import abduction, builder, builder_safety, deduction, sat, strings  # noqa: F401  (importing registers the tasks)
from trainguard.tasks.base import TASKS, Instance, Score, Task, build_task

__all__ = ["TASKS", "Instance", "Score", "Task", "build_task"]
