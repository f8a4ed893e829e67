"""Write featmap/net/models/compiled/*.json, the compiled form of the presets (featmap/net/models/*.yaml), again.

Run after editing a preset: ``python tools/compile_models.py``. Until then featmap reads the edited file itself
(its compiled form no longer holds its text) and tests/test_spec_compiled.py fails.
"""

from __future__ import annotations

from featmap.net.spec.compiled import write_compiled

if __name__ == "__main__":
    for path in write_compiled():
        print(path)
