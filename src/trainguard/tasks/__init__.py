"""Tasks whose answers a program can check; importing this package registers them all."""

from trainguard.tasks import (  # noqa: F401  (importing registers the tasks)
    abduction,
    bash_command,
    builder,
    builder_safety,
    deduction,
    function_call,
    sat,
    stories,
    strings,
    tool_use,
    word_problems,
)
from trainguard.tasks.base import TASKS, Instance, Score, Task, build_task

__all__ = ["TASKS", "Instance", "Score", "Task", "build_task"]
