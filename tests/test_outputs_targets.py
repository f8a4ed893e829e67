"""featmap.io.outputs.OutputOptions.target: the text fast path gives exactly pathlib's answer, and escapes fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from featmap.errors import SpecError
from featmap.io.outputs import Manifest, OutputOptions


@pytest.mark.parametrize(
    "pattern", ["{stem}/{kernel}", "{stem}_{kernel}", "x/./{stem}/{kernel}", "a//{kernel}", ".h/{kernel}"]
)
@pytest.mark.parametrize("rel_dir", [Path(), Path("trip"), Path("a/b")])
def test_target_matches_pathlib(tmp_path: Path, pattern: str, rel_dir: Path) -> None:
    options = OutputOptions(tmp_path / "out", name=pattern)
    got = options.target(Path("/in/photo.jpg"), "sobel_x", rel_dir=rel_dir)
    name = pattern.format(stem="photo", ext="jpg", kernel="sobel_x")
    assert got == tmp_path / "out" / ((rel_dir / name).as_posix() + ".png")
    assert Manifest(tmp_path / "out").rel(got) == (rel_dir / name).as_posix() + ".png"


@pytest.mark.parametrize("pattern", ["../{kernel}", "{stem}/../../{kernel}", "/abs/{kernel}"])
def test_target_outside_the_folder_is_refused(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(SpecError, match="points outside the output folder"):
        OutputOptions(tmp_path / "out", name=pattern).target(Path("/in/photo.jpg"), "k")


def test_a_symlinked_subfolder_leading_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "photo").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SpecError, match="points outside the output folder"):
        OutputOptions(tmp_path / "out").target(Path("/in/photo.jpg"), "k")


@pytest.mark.parametrize("link", ["trip", "trip/photo"])
def test_a_symlink_at_any_depth_leading_out_is_refused(tmp_path: Path, link: str) -> None:
    """The resume's shortcut (a plain last name is inside when its folder is) still sees a link at any level."""
    (tmp_path / "out" / "trip").mkdir(parents=True)
    (tmp_path / "elsewhere" / "photo").mkdir(parents=True)
    if link == "trip":
        (tmp_path / "out" / "trip").rmdir()
        (tmp_path / "out" / "trip").symlink_to(tmp_path / "elsewhere")
    else:
        (tmp_path / "out" / "trip" / "photo").symlink_to(tmp_path / "elsewhere" / "photo")
    options = OutputOptions(tmp_path / "out")
    assert options.target(Path("/in/other.jpg"), "k", rel_dir=Path("plain")) == tmp_path / "out/plain/other/k.png"
    with pytest.raises(SpecError, match="points outside the output folder"):
        options.target(Path("/in/photo.jpg"), "k", rel_dir=Path("trip"))
