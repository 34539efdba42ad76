"""teleport-sync: turn a folder into a Teleport Gaussian-splatting pipeline."""

# The single source of the version (pyproject.toml reads it from here). Not looked up through
# importlib.metadata, which costs 60 ms at every start of the CLI.
__version__ = "0.1.0"
