"""The bundled guest images (firmware/, installed as hvemu.firmware) and name lookup."""
from __future__ import annotations

from pathlib import Path

from .errors import MissingImageError
from .firmware import IMAGES

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
DEFAULT_IMAGE = "hello"


def bundled() -> dict[str, str]:
    """Bundled image name -> one-line description."""
    return dict(IMAGES)


def resolve(name_or_path: str) -> str:
    """A path for an image given by path or by bundled name."""
    p = Path(name_or_path)
    if p.is_file() or (p.exists() and name_or_path not in IMAGES):
        return str(p)
    if name_or_path in IMAGES:
        from . import firmware
        return firmware.path(name_or_path)
    raise MissingImageError(f"{name_or_path}: no such file, and not a bundled image "
                     f"(bundled: {', '.join(IMAGES)})")


def bundled_path(name: str) -> str:
    """The path of a bundled image by name."""
    from . import firmware
    return firmware.path(name)
