"""teleport-sync: turn a folder into a Teleport Gaussian-splatting pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("teleport-sync")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
