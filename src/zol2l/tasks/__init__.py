"""Task families: problem instances handed out to the evaluator and the meta-trainer."""

from zol2l.tasks import attack, bbob, binary, mixture, quadratic, synthetic  # noqa: F401
from zol2l.tasks.base import Problem, TaskFamily
from zol2l.tasks.registry import available_tasks, make_task, register_task, task_class

#: the task of ``zol2l evaluate``/``tune`` without ``--task`` (the paper's section 4.2)
DEFAULT_TASK = binary.BinaryClassification.name

__all__ = ["DEFAULT_TASK", "Problem", "TaskFamily", "available_tasks", "make_task",
           "register_task", "task_class"]
