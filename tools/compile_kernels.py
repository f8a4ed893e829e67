"""Write featmap/kernels/builtin.json, the compiled form of the built-in kernels (kernels/*.yaml), again.

Run after editing a built-in kernel file: ``python tools/compile_kernels.py``. Until then featmap reads the
edited files themselves (the index no longer matches them) and tests/test_kernels_compiled.py fails.
"""

from __future__ import annotations

from featmap.kernels.compiled import builtin_kernel_dir, write_compiled

if __name__ == "__main__":
    print(write_compiled(builtin_kernel_dir()))
