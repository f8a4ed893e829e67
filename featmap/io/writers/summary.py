"""The JSON summary writer: one ``<first map's folder>/maps.json`` per image with every map's facts.

Not among the default formats (``featmap apply`` writes no JSON file); pass ``"json"`` in
`OutputOptions.formats` (or to `open_writers`) to have it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featmap.io.images import atomic_write
from featmap.io.writers import Writer

if TYPE_CHECKING:
    from featmap.net.records import Map

__all__ = ["JsonWriter", "write_json"]


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically; non-finite floats are refused (JSON has none)."""
    text = json.dumps(data, indent=2, allow_nan=False, default=str) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode()))


class JsonWriter(Writer):
    """The facts of an image's maps (name, shapes, parameters, statistics) in one JSON file."""

    name = "json"
    suffix = ".json"
    per_map = False

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.records: list[dict[str, Any]] = []

    def summary_path(self, targets: Mapping[str, Path]) -> Path | None:
        """Where the file goes: ``maps.json`` in the folder of the first map."""
        first = next(iter(targets.values()), None)
        return None if first is None else first.parent / "maps.json"

    def planned_paths(self, targets: Mapping[str, Path]) -> list[Path]:
        path = self.summary_path(targets)
        return [] if path is None else [path]

    def add(self, target: Path, fmap: Map) -> None:
        from featmap.net.records import ChannelInfo, MapInfo

        info = fmap.info
        record: dict[str, Any] = {"name": info.name}
        if isinstance(info, MapInfo):
            record.update(kernel_size=list(info.kernel_size), conv_shape=list(info.conv_shape))
        elif isinstance(info, ChannelInfo):
            record.update(layer=info.layer, channel=info.channel)
        record.update(shape=list(info.shape), params=info.params, stats=asdict(info.stats))
        if isinstance(info, MapInfo):
            record["combined_from"] = list(info.combined_from)
        self.records.append(record)

    def finish(self, targets: Mapping[str, Path]) -> tuple[Path, ...]:
        path = self.summary_path(targets)
        return () if path is None else (write_json(path, {"maps": self.records}),)
