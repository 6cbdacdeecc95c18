"""The pretext tasks, by name. Each module holds a config dataclass, a head, pure losses and a metric."""

from mtssl.tasks.base import Task
from mtssl.tasks.color import ColorConfig, ColorTask
from mtssl.tasks.exemplar import ExemplarConfig, ExemplarTask
from mtssl.tasks.motion import MotionConfig, MotionTask
from mtssl.tasks.relpos import RelPosConfig, RelPosTask
from mtssl.tasks.rotation import RotationTask

TASKS: dict[str, type[Task]] = {
    "relpos": RelPosTask,
    "color": ColorTask,
    "exemplar": ExemplarTask,
    "motion": MotionTask,
    "rotation": RotationTask,
}

__all__ = [
    "TASKS",
    "ColorConfig",
    "ColorTask",
    "ExemplarConfig",
    "ExemplarTask",
    "MotionConfig",
    "MotionTask",
    "RelPosConfig",
    "RelPosTask",
    "Task",
]
