"""A short run of bench/load.py in CI: real users (solo kernels and a shared room)
executing, reading and writing files and typing in terminals at once lose nothing, get
no wrong output and no error, and the gateway leaves no container or socket folder."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import ROOT


def test_a_short_load_loses_and_leaks_nothing(docker_engine, tmp_path):
    report_path = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--users", "8", "--room-size", "4", "--seconds", "30",
         "--json", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["executions"] > 50 and report["files"] and report["terminal_commands"], report
    assert (report["lost"], report["wrong"], report["errors"]) == (0, 0, {}), report
    assert report["leaked"] == {"containers": 0, "socket_dirs": 0}, report
