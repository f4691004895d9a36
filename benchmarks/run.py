"""Run every benchmark script in this folder, one after another, and print their tables.

python benchmarks/run.py [NAME ...]     # e.g. darcy_generation; default: all
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(names: list[str]) -> int:
    scripts = sorted(
        p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )
    available = {p.stem: p for p in scripts}
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmarks {unknown}; available: {sorted(available)}", file=sys.stderr)
        return 2
    failed = []
    for name in names or sorted(available):
        print(f"\n## {name}\n", flush=True)
        if subprocess.run([sys.executable, str(available[name])]).returncode:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
