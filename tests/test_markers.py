"""`make test-fast` leaves out every registered marker but `timing` (a timing test may be pure),
and `make test` runs the `timing` tests in a call of their own: a marker added to pyproject.toml
without the Makefile would silently put server or subprocess tests back into the fast run."""

from __future__ import annotations

import re
import tomllib

from tests.support.paths import REPO


def registered() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return {line.split(":")[0] for line in config["tool"]["pytest"]["ini_options"]["markers"]}


def test_make_test_fast_leaves_out_every_marker_but_timing() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    fast = re.search(r"^FAST := (.*)$", makefile, re.M)
    assert fast is not None, "no FAST := line in the Makefile"
    left_out = set(re.findall(r"\bnot (\w+)", fast.group(1)))
    assert left_out == registered() - {"timing"}


def test_make_test_runs_the_timing_tests_alone_after_the_parallel_run() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    parallel = recipe.index('-n $(TEST_WORKERS) --dist loadfile -m "not timing"')
    assert parallel < recipe.index("-m timing")
    assert "timing" in registered()
