"""The optional decoders (Pillow, PyAV, numpy; pillow-heif for HEIC), found or explained.

The importer is injected so a test can make an import fail without uninstalling anything; the
real one (`importlib.import_module`) is asked once per process. The modules that decode and
measure (`images`, `video`, `measures`) import these libraries themselves, and are imported
only after `load_decoders` found them.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

Importer = Callable[[str], ModuleType]

INSTALL_HINT = "pip install 'teleport-sync[preflight]'"
REQUIRED = ("numpy", "PIL.Image", "PIL.ImageOps", "av")


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str | None  # why pre-flight cannot run here, with the fix; None when it can
    heif: bool = False  # HEIC/HEIF photos can be opened (pillow-heif registered with Pillow)


def load_decoders(importer: Importer | None = None) -> Availability:
    """Whether the decoders can be imported, or why not (naming the module and the fix)."""
    if importer is None:
        return _load_default()
    return _load(importer)


@functools.cache
def _load_default() -> Availability:
    return _load(importlib.import_module)


def _load(importer: Importer) -> Availability:
    for name in REQUIRED:
        try:
            importer(name)
        except ImportError as exc:
            return Availability(
                False,
                f"the preflight extra is not installed ({name} cannot be imported: {exc}); "
                f"install it: {INSTALL_HINT}",
            )
    return Availability(True, None, _heif(importer))


def _heif(importer: Importer) -> bool:
    try:
        heif = importer("pillow_heif")
        heif.register_heif_opener()
    except (ImportError, AttributeError):
        return False  # HEIC photos are then skipped, and the figures say so
    return True
