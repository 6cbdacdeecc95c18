"""The pretext tasks, by name. Each module holds a config dataclass, a head, pure losses and a metric."""

from mtssl.tasks.base import Task
from mtssl.tasks.color import ColorHeadConfig, ColorTask
from mtssl.tasks.exemplar import ExemplarHeadConfig, ExemplarTask
from mtssl.tasks.jigsaw import JigsawTask
from mtssl.tasks.motion import MotionHeadConfig, MotionTask
from mtssl.tasks.relpos import RelposHeadConfig, RelposTask
from mtssl.tasks.rotation import RotationTask

TASKS: dict[str, type[Task]] = {
    "relpos": RelposTask,
    "color": ColorTask,
    "exemplar": ExemplarTask,
    "motion": MotionTask,
    "rotation": RotationTask,
    "jigsaw": JigsawTask,
}

__all__ = [
    "TASKS",
    "ColorHeadConfig",
    "ColorTask",
    "ExemplarHeadConfig",
    "ExemplarTask",
    "MotionHeadConfig",
    "MotionTask",
    "RelposHeadConfig",
    "RelposTask",
    "Task",
]
