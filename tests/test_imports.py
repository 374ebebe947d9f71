"""Every module imports first, on its own: an import cycle shows only when its module is the first one imported
(a user's `import trainguard.data.pairs`), so each module is imported into an interpreter that holds no other
trainguard module (third-party libraries stay loaded, so the check takes seconds)."""

import subprocess
import sys
from pathlib import Path

import trainguard

CHECK = """
import importlib, sys, traceback
import torch, transformers, pydantic, accelerate, peft  # noqa: F401  (loaded once; they are not under test)
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "trainguard" or m.startswith("trainguard.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
"""


def test_every_module_imports_first():
    root = Path(trainguard.__file__).parent
    names = sorted(
        ".".join(("trainguard", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        for p in root.rglob("*.py")
        if p.name != "__main__.py"
    )
    assert len(names) > 100
    out = subprocess.run([sys.executable, "-c", CHECK, *names], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
