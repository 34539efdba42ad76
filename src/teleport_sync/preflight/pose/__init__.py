"""The pose check: can these frames be posed? A quick structure-from-motion pass (pycolmap,
the `pose` extra) over downscaled frames, in a child process with a time and memory limit.

`runner` starts the child and says what became of it; `child` (the child's entry) decodes the
frames (`frames`) and reconstructs them (`sfm`, over the pairs `pairs` chose); `rules` turns
the figures into a verdict with reasons naming the cause. Imported by `preflight.check`.
"""

from .rules import PoseJudgement, judge_pose
from .runner import POSE_INSTALL_HINT, PoseRun, pose_available, run_pose

__all__ = [
    "POSE_INSTALL_HINT",
    "PoseJudgement",
    "PoseRun",
    "judge_pose",
    "pose_available",
    "run_pose",
]
