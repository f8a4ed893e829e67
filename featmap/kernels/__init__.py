"""Kernels as data: the `Kernel` record, YAML/JSON kernel files, parametric kernels and the ``-k`` library.

One module per idea: `records` (`Kernel`, `KernelBank`), `parametric` (``gaussian:size=5,sigma=1.2``),
`files` (reading and validating kernel files), `library` (kernel folders and ``-k`` lookup). The names
below are the public ones; import them from ``featmap.kernels``.
"""

from __future__ import annotations

from featmap.kernels.files import KERNEL_SUFFIXES, load_kernel_file
from featmap.kernels.library import KERNEL_PATH_ENV, KernelLibrary, builtin_kernel_dir
from featmap.kernels.parametric import parametric_kernel
from featmap.kernels.records import Kernel, KernelBank

__all__ = [
    "KERNEL_PATH_ENV",
    "KERNEL_SUFFIXES",
    "Kernel",
    "KernelBank",
    "KernelLibrary",
    "builtin_kernel_dir",
    "load_kernel_file",
    "parametric_kernel",
]
