"""The engine's exceptions, in one place.

    UploadFailed          this attempt failed; the row stays and is retried later
    ├── FileChanged       the file changed under the upload; its capture was abandoned
    ├── StartOver         the capture vanished (deleted on the server): the next attempt
    │                     creates a new one; the row says why
    └── Stopped           SIGTERM: acknowledged parts are journaled, the rest resumes later
        └── Paused        the gate said no new part may start (pause, a closed upload window)

`InputProblem` (from `inputs`) is raised when the file itself cannot be read or used.
"""

from __future__ import annotations


class UploadFailed(Exception):
    """This attempt failed; the file stays in the journal and can be retried later."""


class FileChanged(UploadFailed):
    """The file changed while it was being uploaded; its capture was abandoned."""


class StartOver(UploadFailed):
    """The capture is gone from the account before completion: the file starts over."""


class Stopped(UploadFailed):
    """Asked to stop (SIGTERM): acknowledged parts are journaled, the rest resumes later."""


class Paused(Stopped):
    """The gate said no new part may start (paused, upload window closed); resumes later."""
