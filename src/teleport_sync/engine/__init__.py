"""Upload one file, as steps: create (intent token, adoption, sweeps), parts, complete.

`Uploader` coordinates them for one file at a time; the names below are what the daemon, the
CLI and the tests import. Imports the API client (through the `ports.TeleportClient` protocol),
the journal, `inputs` and the helpers; never the daemon, the results or the CLI.
"""

from .context import NoProgress, Progress
from .create import carries, uploading_name
from .errors import FileChanged, Paused, StartOver, Stopped, UploadFailed
from .plan import MAX_PARTS, PartPlan, plan_parts
from .uploader import Uploader, UploadResult

__all__ = [
    "MAX_PARTS",
    "FileChanged",
    "NoProgress",
    "PartPlan",
    "Paused",
    "Progress",
    "StartOver",
    "Stopped",
    "UploadFailed",
    "UploadResult",
    "Uploader",
    "carries",
    "plan_parts",
    "uploading_name",
]
