"""Task families: problem instances handed out to the evaluator and the meta-trainer."""

from zol2l.tasks import attack, bbob, binary, mixture, quadratic, synthetic  # noqa: F401
from zol2l.tasks.base import Problem, TaskFamily
from zol2l.tasks.registry import available_tasks, make_task, register_task

__all__ = ["Problem", "TaskFamily", "available_tasks", "make_task", "register_task"]
