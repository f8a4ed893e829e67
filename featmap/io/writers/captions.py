"""The words under the pictures: a shape as ``512×512×1`` and the one-line summary of what a kernel-bank job
applies (`op_summary`), shared by the contact sheet and the HTML report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from featmap.enums import Combine
    from featmap.io.outputs import OutputOptions
    from featmap.kernels import KernelBank
    from featmap.net.layers import Act, Conv2d, GlobalPool2d, Pool2d

__all__ = ["BankRun", "op_summary", "shape_text"]


class BankRun(Protocol):
    """What the pictures read of a kernel-bank job (`featmap.run.jobs.ApplyJob` is one)."""

    @property
    def bank(self) -> KernelBank: ...
    @property
    def conv(self) -> Conv2d: ...
    @property
    def act(self) -> Act: ...
    @property
    def pool(self) -> Pool2d | GlobalPool2d | None: ...
    @property
    def combine(self) -> Combine | None: ...
    @property
    def output(self) -> OutputOptions: ...


def shape_text(shape: tuple[int, ...]) -> str:
    """``512×512×1``."""
    return "×".join(str(n) for n in shape)


def op_summary(job: BankRun) -> str:
    """One line: the convolution, activation and pooling a job applies."""
    conv = job.conv
    parts = [
        ("convolution (flipped kernels)" if conv.flip else "cross-correlation")
        + f", stride {_pair(conv.stride)}, padding {_padding(conv.padding)} {conv.pad_mode.value}"
        + (f", dilation {_pair(conv.dilation)}" if conv.dilation not in (1, (1, 1)) else ""),
        f"activation {job.act.kind.value}",
    ]
    if job.pool is not None:
        size = getattr(job.pool, "size", None)
        parts.append(f"{job.pool.kind.value} pool" + (f" {_pair(size)}" if size else " (global)"))
    if job.combine is not None:
        parts.append(f"combine {job.combine.value}")
    return "; ".join(parts)


def _pair(value: object) -> str:
    if isinstance(value, tuple):
        return str(value[0]) if len(set(value)) == 1 else "×".join(str(v) for v in value)
    return str(value)


def _padding(padding: object) -> str:
    return padding if isinstance(padding, str) else _pair(padding)
