"""JupyterLab's first cell, typed and run as soon as the notebook shows, with no room: the
notebook's solo kernel is still starting in a new container when the cell is run.

JupyterLab drops a run while its notebook's session has no kernel yet (CodeCell.execute
clears the prompt and sends nothing); kernelgate_jupyter makes the run wait for it. The
kernel's first socket also fails Chromium's subprotocol check and reconnects at once with
the same session_id, through jupyter_server's GatewayWebSocketConnection.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from kernelgate.jwt_auth import mint
from tests.browser import browser, page_for  # noqa: F401 - fixtures
from tests.postgres import free_port

pytest.importorskip("kernelgate_jupyter", reason="the JupyterLab extension is not installed (pip install ./extensions/jupyter)")

SECRET = "lab-first-cell-secret-long-enough-for-hs256"
NOTEBOOK = {"type": "notebook", "content": {
    "cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [], "execution_count": None}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}}


@pytest.fixture
def lab(docker_engine, start_gateway, tmp_path):
    gateway = start_gateway(f"--jwt-secret={SECRET}", "--kernels=docker")
    port, lab_token = free_port(), secrets.token_hex(16)
    root = tmp_path / "root"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KERNEL_ROOM"}
    env.update(JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = tmp_path / "lab.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={lab_token}", f"--ServerApp.root_dir={root}",
         f"--gateway-url={gateway.url}", "--GatewayClient.auth_scheme=Bearer",
         f"--GatewayClient.auth_token={mint(SECRET, 'alice', tier='team')}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"token {lab_token}"}
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(f"{url}/api/status", headers=headers, timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    saved = requests.put(f"{url}/api/contents/first.ipynb", headers=headers, json=NOTEBOOK, timeout=30)
    assert saved.status_code == 201, saved.text
    yield f"{url}/lab/tree/first.ipynb?reset&token={lab_token}"
    proc.terminate()
    proc.wait(30)


def test_a_cell_run_before_the_kernel_started_runs(lab, page_for):
    page = page_for()
    page.page.goto(lab)
    editor = page.page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.wait_for(timeout=60_000)
    editor.click()
    page.page.keyboard.type("print(6 * 7)")
    page.page.keyboard.press("Shift+Enter")
    output = page.page.locator(".jp-OutputArea-output").first
    try:
        output.wait_for(timeout=60_000)
    except Exception:
        page.screenshot("lab-first-cell")
        raise
    assert output.inner_text().strip() == "42"
    assert page.page.locator(".jp-InputPrompt").first.inner_text().strip() == "[1]:"
