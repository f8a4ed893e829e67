"""Files given as a network that are something else (a weights file, an image), told by their first bytes before any
text is read, so that the error says what the file is and how to give it, not "over the file size limit" or "cannot be
read as UTF-8"."""

from __future__ import annotations

from pathlib import Path

from featmap.errors import SpecError

__all__ = ["check_spec_bytes"]

#: First bytes of the image formats people hand over by mistake (none can start a YAML or JSON text).
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


def _held(path: Path) -> str | None:
    """What a file that is no spec holds, told by its first bytes (a weights file, an image), or None: a weights
    file given as the network was refused as "over the file size limit; set FEATMAP_MAX_FILE_SIZE" or "cannot be
    read as UTF-8"."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError:
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (Keras weights)"
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000:
        return "a .safetensors weights file"
    if head.startswith(b"\x80") and len(head) > 1 and 2 <= head[1] <= 5:  # a pickle's protocol
        return "a PyTorch checkpoint (a pickle)"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy array (.npy)"
    if head.startswith(_IMAGE_MAGIC) or head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "an image"
    if head.startswith(b"PK"):
        import zipfile  # only for a zip: a spec run does not load it

        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(name.endswith("data.pkl") for name in names):
            return "a PyTorch checkpoint"
        if names and all(name.endswith(".npy") for name in names):
            return "a numpy .npz of weights"
    return None


def check_spec_bytes(path: Path) -> None:
    """Refuse a file given as a spec that holds weights or an image, naming what it holds and how to give it."""
    held = _held(path)
    if held is not None:
        raise SpecError(
            str(path),
            f"is {held}, not a network",
            "describe the network with a spec file, an ONNX or .keras model, or a preset, and give weights files as "
            "its weights (README, 'Weights files')",
        )
