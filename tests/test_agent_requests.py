"""Requests to a sandbox's agent sent at once are all answered (JupyterLab sends the
checkpoint, listing and file requests of a notebook it opens together). The gateway's
reader of the agent's replies once missed replies of concurrent requests and every later
request of that sandbox got 503 "did not answer" after 30 s."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from kernelgate.jwt_auth import mint
from tests.harness import GatewayProcess

SECRET = "agent-requests-" + "s" * 32


def test_concurrent_file_requests_to_one_agent_are_all_answered(docker_engine, tmp_path):
    gateway = GatewayProcess(tmp_path, f"--jwt-secret={SECRET}", "--kernels=docker").start()
    headers = {"Authorization": f"Bearer {mint(SECRET, 'alice')}"}
    try:
        made = requests.post(gateway.url + "/api/rooms", json={"name": "burst", "languages": ["python3"]},
                             headers=headers, timeout=120)
        assert made.status_code == 201, made.text
        room = made.json()["id"]

        def missing(i: int) -> int:
            url = f"{gateway.url}/api/rooms/{room}/contents/.ipynb_checkpoints/n{i}.ipynb?content=0"
            return requests.get(url, headers=headers, timeout=60).status_code

        for burst in range(60):
            with ThreadPoolExecutor(5) as pool:
                answers = list(pool.map(missing, range(5)))
            assert answers == [404] * 5, f"burst {burst}: {answers}"
    finally:
        gateway.stop()
        gateway.cleanup()
