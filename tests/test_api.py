"""The REST surface and its errors, on a gateway with local kernels (no Docker needed)."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import ROOT
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect


def assert_json_error(response, status: int) -> None:
    assert response.status == status, response.body
    assert set(response.body) == {"reason", "message"}, response.body
    assert response.body["message"]


async def test_version_and_catch_all(local_gateway):
    client = local_gateway.client()
    response = await client.request("GET", "/api")
    assert response.status == 200
    assert response.body["version"]
    assert_json_error(await client.request("GET", "/api/contents"), 404)
    assert_json_error(await client.request("GET", "/tree"), 404)


async def test_kernelspecs_are_the_projects_own(local_gateway):
    client = local_gateway.client()
    response = await client.request("GET", "/api/kernelspecs")
    assert response.status == 200
    assert response.body["default"] == "python3"
    specs = response.body["kernelspecs"]
    assert set(specs) == {"python3"}  # local mode: those that run locally; never the host's kernels
    python = specs["python3"]
    assert python["spec"]["language"] == "python"
    logo = python["resources"]["logo-64x64"]
    image = await client.request("GET", logo)
    assert image.status == 200 and image.headers["Content-Type"] == "image/png"
    one = await client.request("GET", "/api/kernelspecs/python3")
    assert one.body == python


async def test_bad_input_gets_clear_errors(local_gateway):
    client = local_gateway.client()
    assert_json_error(await client.request("GET", "/api/kernelspecs/nope"), 404)
    assert_json_error(await client.request("GET", "/kernelspecs/python3/../kernel.json"), 404)
    assert_json_error(await client.request("GET", "/kernelspecs/python3/nothing.png"), 404)
    assert_json_error(await client.request("POST", "/api/kernels", {"name": "nope"}), 404)
    assert_json_error(await client.request("POST", "/api/kernels", raw=b"{not json"), 400)
    assert_json_error(await client.request("POST", "/api/kernels", raw=b"[1, 2]"), 400)
    assert_json_error(await client.request("POST", "/api/kernels", {"name": 5}), 400)
    assert_json_error(await client.request("POST", "/api/kernels", {"name": "python3", "env": [1]}), 400)
    unknown = "00000000-0000-0000-0000-000000000000"
    assert_json_error(await client.request("GET", f"/api/kernels/{unknown}"), 404)
    assert_json_error(await client.request("DELETE", f"/api/kernels/{unknown}"), 404)
    assert_json_error(await client.request("POST", f"/api/kernels/{unknown}/interrupt"), 404)
    assert_json_error(await client.request("POST", f"/api/kernels/{unknown}/restart"), 404)
    assert_json_error(await client.request("GET", "/api/sessions/nope"), 404)
    assert_json_error(await client.request("POST", "/api/sessions", {"path": 3}), 400)
    huge = {"name": "python3", "env": {"KERNEL_X": "x" * 300_000}}  # parsed on the loop: capped
    assert_json_error(await client.request("POST", "/api/kernels", huge), 413)
    assert (await client.request("GET", "/api")).status == 200


async def test_websocket_to_unknown_kernel_is_404_before_upgrade(local_gateway):
    url = local_gateway.url.replace("http", "ws") + "/api/kernels/nope/channels"
    with pytest.raises(HTTPClientError) as info:
        await websocket_connect(HTTPRequest(url))
    assert info.value.code == 404


async def test_only_kernel_env_passes(start_gateway):
    """Only allowed_client_env's variables pass (KERNEL_SHAPE is not one)."""
    gateway = start_gateway("--kernels=local", "--KernelRegistry.allowed_client_env=KERNEL_COLOR")
    client = gateway.client()
    kernel = await client.start_kernel(env={"KERNEL_COLOR": "blue", "SECRET": "x", "KERNEL_USERNAME": "mallory",
                                            "KERNEL_SHAPE": "round"})
    ws = await client.connect(kernel["id"])
    run = await ws.execute(
        "import os; print(os.environ.get('KERNEL_COLOR'), os.environ.get('SECRET'),"
        " os.environ.get('KERNEL_USERNAME'), os.environ.get('KERNEL_SHAPE'))"
    )
    assert run.stdout.split() == ["blue", "None", "dev", "None"]
    ws.close()
    assert (await client.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204


async def test_kernel_model_format(local_gateway):
    client = local_gateway.client()
    kernel = await client.start_kernel()
    from datetime import datetime

    datetime.strptime(kernel["last_activity"], "%Y-%m-%dT%H:%M:%S.%fZ")  # GatewayClient's parse
    assert kernel["execution_state"] == "idle"
    assert kernel["connections"] == 0
    assert kernel["kernelgate"]["kind"] == "solo"
    listed = (await client.request("GET", "/api/kernels")).body
    assert [k["id"] for k in listed] == [kernel["id"]]
    response = await client.request("POST", "/api/kernels", {"name": "python3"})
    assert response.headers["Location"] == f"/api/kernels/{response.body['id']}"


async def test_sessions_api(local_gateway):
    client = local_gateway.client()
    created = await client.request(
        "POST", "/api/sessions", {"path": "a.ipynb", "name": "a", "type": "notebook", "kernel": {"name": "python3"}}
    )
    assert created.status == 201, created.body
    session = created.body
    assert session["kernel"]["name"] == "python3"
    listed = (await client.request("GET", "/api/sessions")).body
    assert [s["id"] for s in listed] == [session["id"]]
    patched = await client.request("PATCH", f"/api/sessions/{session['id']}", {"path": "b.ipynb"})
    assert patched.body["path"] == "b.ipynb"
    assert (await client.request("DELETE", f"/api/sessions/{session['id']}")).status == 204
    assert (await client.request("GET", f"/api/kernels/{session['kernel']['id']}")).status == 404
    assert (await client.request("GET", "/api/sessions")).body == []


async def test_concurrent_starts_respect_max_kernels(start_gateway):
    gateway = start_gateway("--kernels=local", "--max-kernels=2")
    client = gateway.client()
    responses = await asyncio.gather(
        *(client.request("POST", "/api/kernels", {"name": "python3"}) for _ in range(5))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 201, 403, 403, 403]
    for r in responses:
        if r.status == 403:
            assert r.body["reason"] == "Resource Limit"
    assert len((await client.request("GET", "/api/kernels")).body) == 2


async def test_no_auth_mode_refuses_public_addresses(tmp_path):
    from tests.harness import GatewayProcess

    gateway = GatewayProcess(tmp_path, "--kernels=local", "--ip=0.0.0.0")
    with pytest.raises(RuntimeError, match="Refusing to listen"):
        gateway.start(timeout=20)


async def test_languages(start_gateway, docker_engine):
    gateway = start_gateway("--kernels=docker")
    languages = (await gateway.client().request("GET", "/api/languages")).body
    python = next(lang for lang in languages if lang["kernelspec"] == "python3")
    assert python["name"] == "python" and python["version"] == "3.11"
    assert python["tier"] == "low" and python["allowed"] is True and python["ready"] is True
    assert python["image"].startswith("kernelgate/python:")
    assert python["resources"]["memory"] == 256 * 1024 * 1024 and python["resources"]["pids"] == 128
    assert {lang["kernelspec"] for lang in languages} == {
        p.name for p in (ROOT / "kernelspecs").iterdir() if (p / "kernel.json").is_file()}
