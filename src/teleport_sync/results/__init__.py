"""After an upload: follow each capture until it ends (`poller`), put its models on disk
(`downloads`: where each input's results go, both metadata shapes, the one model-download path,
previews, file modes; `metadata`: v2 or v1, and the account's answer remembered; `cameras`:
what Teleport posed, read against the input), and the actions of an ended capture (`actions`:
download, move, hooks, each journaled once).

Imports the API client, the journal, `inputs` and the helpers; never the daemon or the CLI.
"""

from ..logging import storable_url
from .downloads import (
    FileAccess,
    ModelOptions,
    WouldOverwrite,
    download_capture,
    fetch_cameras,
    fetch_models,
    file_names,
    plan_models,
    read_models,
    result_folder,
)

__all__ = [
    "FileAccess",
    "ModelOptions",
    "WouldOverwrite",
    "download_capture",
    "fetch_cameras",
    "fetch_models",
    "file_names",
    "plan_models",
    "read_models",
    "result_folder",
    "storable_url",
]
