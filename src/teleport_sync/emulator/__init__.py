"""A local Teleport API for the demo, development and tests: `teleport-sync emulator`.

Needs the `emulator` extra (FastAPI, uvicorn, moto's S3 server, boto3). Import
`EmulatorServer` from `teleport_sync.emulator.server`. A world of its own: it imports nothing
of the client side, and only the CLI (and the tests) import it.
"""

REQUIRED_MODULES = ("fastapi", "uvicorn", "moto", "boto3")


def missing_modules() -> list[str]:
    """The emulator's dependencies that are not installed."""
    import importlib.util

    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
