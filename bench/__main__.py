"""`python -m bench` (`make bench`): run every `bench/*_bench.py` module's `main()` in turn.

`python -m bench NAME...` runs only the modules whose name contains one of the NAMEs.
Benchmarks are not tests: they start real servers, take minutes, and print their results.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(path.stem for path in Path(__file__).parent.glob("*_bench.py"))
    chosen = [name for name in names if not argv or any(word in name for word in argv)]
    if not chosen:
        print(f"no benchmark matches {argv}; have: {', '.join(names)}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"=== bench.{name}", flush=True)
        importlib.import_module(f"bench.{name}").main([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
