"""Pre-flight: judging an input's pictures before its upload costs money. Decoders (`images`
for a zip's photos through Pillow, `video` for an MP4's frames through PyAV), the measures on
each decoded frame (`measures`: sharpness, exposure, perceptual hash, motion), the rules that
turn them into a verdict with its figures and reasons (`rules`), the check of one file
(`check`) and the once-per-version journaled gate the daemon asks (`gate`).

Imports the helpers, `inputs` and `journal` only. Its decoders are an optional extra
(`pip install 'teleport-sync[preflight]'`); `deps` says whether they are there, and why not.
"""

from .deps import INSTALL_HINT, Availability, load_decoders
from .rules import Result, Verdict

__all__ = ["INSTALL_HINT", "Availability", "Result", "Verdict", "load_decoders"]
