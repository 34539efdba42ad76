"""What an input file is, read from the file alone: its format, identity and capture name
(`identity`), whether it is complete as a format (`completeness`, walking MP4 boxes with
`mp4boxes`), how many frames it holds (`frames`), and the demo's sample files (`samples`).

Imports only the helpers at the top of the package (`models`); everything above may import it.
"""

from .completeness import IMAGE_SUFFIXES, Completeness, check_complete, settled_reason
from .identity import (
    FORMATS_BY_SUFFIX,
    UNREADABLE,
    InputProblem,
    capture_name,
    fingerprint,
    identify,
    input_format_for,
    not_a_capture,
    same_file_as,
)

__all__ = [
    "FORMATS_BY_SUFFIX",
    "IMAGE_SUFFIXES",
    "UNREADABLE",
    "Completeness",
    "InputProblem",
    "capture_name",
    "check_complete",
    "fingerprint",
    "identify",
    "input_format_for",
    "not_a_capture",
    "same_file_as",
    "settled_reason",
]
