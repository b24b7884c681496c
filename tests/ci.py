"""Whether the tests run in CI, and what a missing prerequisite does there.

Under CI (`CI` set to `true`, in any case, as CI services set it) nothing may be
skipped: a test whose prerequisite is missing (Docker, an image, PostgreSQL, Chromium)
fails, and conftest.py fails the run if any test was skipped anyway. Locally such a
test is skipped, with the reason.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() == "true"


def require(problem: str | None) -> None:
    """Nothing if `problem` is None; else fail the test under CI and skip it elsewhere."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true requires this test to run: {problem}", pytrace=False)
    pytest.skip(problem)
