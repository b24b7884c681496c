"""Abuse checklist rows 3 (disk fill) and 4 (inode exhaustion), and the room limits of
issue 16 item 8, against real room containers: a room kernel that writes past its plan's
workspace_bytes or creates files past workspace_inodes gets ENOSPC while the gateway and
other rooms go on; snapshots are capped in number and size; no room outlives its plan's
max_room_lifetime."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET = "quotas-test-secret-long-enough-for-hs256-signatures"
MiB = 1 << 20
CONFIG = """
MiB = 1 << 20
c.Plans.plans = {
    "small": {"kernel_tiers": ["low"], "max_rooms": 3, "workspace_bytes": 32 * MiB,
              "workspace_inodes": 400, "max_snapshots": 2, "snapshot_bytes": 4 * MiB,
              "max_room_lifetime": 3600},
    "big": {"kernel_tiers": ["low"], "workspace_bytes": 128 * MiB, "snapshot_bytes": 128 * MiB},
}
c.Plans.order = ["small", "big"]
"""


def token(user: str, tier: str = "small") -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "exp": now + 3600, "iat": now, "tier": tier}, SECRET, algorithm="HS256")


def _mounts_below(folder) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [p for p in points if p.startswith(str(folder))]


@pytest.fixture
def no_mounts_left(tmp_path):
    """After the gateways stopped (set up first: torn down last): no workspace volume of
    the test is still mounted or holds a loop device."""
    yield
    left = _mounts_below(tmp_path)
    for point in left:
        subprocess.run(["umount", "-l", point], check=False)
    loops = [subprocess.run(["losetup", "-n", "-O", "NAME", "-j", str(image)], capture_output=True,
                            text=True).stdout.strip() for image in tmp_path.glob("*/volumes/*.ext4")]
    assert not left and not any(loops), (left, loops)


@pytest.fixture
def quota_gateway(no_mounts_left, docker_engine, start_gateway, tmp_path):
    """start_gateway(like=None, env=None) with the quota plan and Docker kernels."""
    config = tmp_path / "quotas_config.py"
    config.write_text(CONFIG)

    def start(like=None, env=None):
        return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}",
                             like=like, env=env)
    return start


async def make_room(client, **extra) -> dict:
    response = await client.request("POST", "/api/rooms", {"name": "quota", "languages": ["python3"], **extra})
    assert response.status == 201, response.body
    return response.body


async def room_python(client, room: dict):
    return await client.connect(next(k["id"] for k in room["kernels"] if k["name"] == "python3"))


FILL = """
import errno, os
written, error = 0, None
try:
    with open('/workspace/{name}', 'wb') as f:
        for _ in range({mib}):
            f.write(b'x' * (1 << 20))
            f.flush()
            written += 1
        os.fsync(f.fileno())
except OSError as e:
    error = errno.errorcode.get(e.errno)
print(written, error)
"""

MANY_FILES = """
import errno, os
os.makedirs('/workspace/many', exist_ok=True)
made, error = 0, None
try:
    for i in range(2000):
        open(f'/workspace/many/{i}', 'w').close()
        made += 1
except OSError as e:
    error = errno.errorcode.get(e.errno)
print(made, error)
"""


async def test_a_kernel_writing_past_the_byte_quota_gets_enospc(quota_gateway):
    gateway = quota_gateway()
    alice, bob = gateway.client(token("alice")), gateway.client(token("bob"))
    room, other = await make_room(alice), await make_room(bob)
    py = await room_python(alice, room)
    run = await py.execute(FILL.format(name="big", mib=64))
    written, error = run.stdout.split()
    assert error == "ENOSPC" and int(written) < 32, run.stdout  # before: 64 None
    assert room["limits"] == {"workspace_bytes": 32 * MiB, "workspace_inodes": 400, "max_snapshots": 2,
                              "snapshot_bytes": 4 * MiB, "max_room_lifetime": 3600}
    working = gateway.data_dir / "rooms" / room["id"]
    assert os.path.ismount(working)
    # the Contents API's writes fail the same way, as JSON
    put = await alice.request("PUT", f"/api/rooms/{room['id']}/contents/more.bin", {
        "type": "file", "format": "base64", "content": base64.b64encode(os.urandom(MiB)).decode()})
    assert put.status == 413, put.body
    # the gateway and the other room go on
    assert (await alice.request("GET", "/api/health")).status == 200
    other_py = await room_python(bob, other)
    run = await other_py.execute(FILL.format(name="fine", mib=8))
    assert run.stdout.split() == ["8", "None"], run.stdout
    # the room is usable again once the file is gone
    assert (await py.execute("import os; os.remove('/workspace/big')")).status == "ok"
    run = await py.execute(FILL.format(name="after", mib=4))
    assert run.stdout.split() == ["4", "None"], run.stdout
    py.close()
    other_py.close()

    gateway.stop()  # syncs, and detaches the host's mount (the room kernels keep running)
    assert not os.path.ismount(working)
    gateway = quota_gateway(like=gateway)
    alice = gateway.client(token("alice"))
    assert os.path.ismount(working)  # attached again, before the kernels were re-adopted
    room = (await alice.request("GET", f"/api/rooms/{room['id']}")).body
    py = await room_python(alice, room)
    run = await py.execute("import os; print(os.path.getsize('/workspace/after'))")
    assert run.stdout.strip() == str(4 * MiB)
    run = await py.execute(FILL.format(name="again", mib=64))
    assert run.stdout.split()[1] == "ENOSPC", run.stdout
    py.close()
    assert (await alice.request("DELETE", f"/api/rooms/{room['id']}")).status == 204
    assert not os.path.ismount(working) and not working.exists()
    assert not (gateway.data_dir / "volumes" / f"{room['id']}.ext4").exists()


async def test_a_kernel_creating_files_past_the_inode_quota_gets_enospc(quota_gateway):
    gateway = quota_gateway()
    alice = gateway.client(token("alice"))
    room = await make_room(alice)
    py = await room_python(alice, room)
    run = await py.execute(MANY_FILES)
    made, error = run.stdout.split()
    assert error == "ENOSPC" and 300 < int(made) < 450, run.stdout  # before: 2000 None
    assert (await py.execute("import shutil; shutil.rmtree('/workspace/many')")).status == "ok"
    run = await py.execute("open('/workspace/ok.txt', 'w').write('fine'); print('ok')")
    assert run.stdout.strip() == "ok"
    py.close()


async def test_a_room_keeps_at_most_max_snapshots(quota_gateway):
    gateway = quota_gateway()
    alice = gateway.client(token("alice"))
    room = await make_room(alice)
    path = f"/api/rooms/{room['id']}/snapshots"
    taken = []
    for _ in range(3):
        response = await alice.request("POST", path)
        assert response.status == 201, response.body
        taken.append(response.body["id"])
    listed = [s["id"] for s in (await alice.request("GET", path)).body]
    assert listed == taken[1:]  # the oldest went; before: all three
    # a restore of the oldest kept one: its "before restore" snapshot deletes the other
    restored = await alice.request("POST", f"{path}/{taken[1]}/restore")
    assert restored.status == 200, restored.body
    listed = [s["id"] for s in (await alice.request("GET", path)).body]
    assert listed == [taken[1], restored.body["previous"]["id"]]
    stored = gateway.data_dir / "storage" / "rooms" / room["id"] / "snapshots"
    assert sorted(p.name for p in stored.iterdir()) == sorted(f"{s}.tar" for s in listed)


async def test_a_snapshot_past_snapshot_bytes_is_refused_and_nothing_stored(quota_gateway):
    gateway = quota_gateway()
    alice = gateway.client(token("alice"))
    room = await make_room(alice)
    py = await room_python(alice, room)
    run = await py.execute("import os; open('/workspace/noise', 'wb').write(os.urandom(6 << 20))")
    assert run.status == "ok"
    path = f"/api/rooms/{room['id']}/snapshots"
    refused = await alice.request("POST", path)
    assert refused.status == 413, refused.body  # before: 201
    assert refused.body["reason"] == "Payload Too Large"
    assert "4194304 bytes" in refused.body["message"] and "nothing was stored" in refused.body["message"]
    assert (await alice.request("GET", path)).body == []
    stored = gateway.data_dir / "storage" / "rooms" / room["id"] / "snapshots"
    assert not stored.exists() or list(stored.iterdir()) == []  # no partial object either
    assert (await alice.request("GET", f"/api/rooms/{room['id']}")).body["storage_status"]["state"] == "ok"
    assert (await py.execute("import os; os.truncate('/workspace/noise', 1 << 20)")).status == "ok"
    kept = await alice.request("POST", path)
    assert kept.status == 201, kept.body
    # a room too large for its final snapshot is still deleted (without one)
    assert (await py.execute("import os; open('/workspace/noise', 'wb').write(os.urandom(6 << 20))")).status == "ok"
    py.close()
    assert (await alice.request("DELETE", f"/api/rooms/{room['id']}")).status == 204
    assert [p.name for p in stored.iterdir()] == [f"{kept.body['id']}.tar"]


async def test_no_room_outlives_its_plans_max_room_lifetime(quota_gateway):
    gateway = quota_gateway()
    alice = gateway.client(token("alice"))
    refused = await alice.request("POST", "/api/rooms", {"name": "long", "languages": ["python3"],
                                                         "expires_in": 7200})
    assert refused.status == 403, refused.body  # before: 201
    assert "3600 seconds" in refused.body["message"]
    room = await make_room(alice)  # no expiry asked: the plan's lifetime
    created = datetime.fromisoformat(room["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(room["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - created) - timedelta(seconds=3600)) < timedelta(seconds=5)
    path = f"/api/rooms/{room['id']}"
    for value in (None, (created + timedelta(seconds=3700)).isoformat()):
        response = await alice.request("PATCH", path, {"expires_at": value})
        assert response.status == 403, (value, response.body)
        assert "at most" in response.body["message"]
    within = (created + timedelta(seconds=1800)).isoformat()
    response = await alice.request("PATCH", path, {"expires_at": within})
    assert response.status == 200, response.body


async def test_rooms_fail_closed_where_quotas_cannot_be_enforced(quota_gateway):
    """No mkfs.ext4 on the gateway's PATH (as on a host without e2fsprogs): rooms answer
    503 naming the reason, solo kernels still start."""
    gateway = quota_gateway(env={"PATH": "/usr/bin:/bin"})
    alice = gateway.client(token("alice"))
    refused = await alice.request("POST", "/api/rooms", {"name": "unlimited", "languages": ["python3"]})
    assert refused.status == 503, refused.body  # before: 201, a workspace without limits
    assert "mkfs.ext4 is not installed" in refused.body["message"]
    assert "workspace_quotas" in refused.body["message"]
    assert (await alice.request("GET", "/api/rooms")).body == []
    kernel = await alice.start_kernel("python3")
    assert (await alice.request("DELETE", f"/api/kernels/{kernel['id']}")).status == 204


async def test_rooms_of_the_past_are_cut_to_the_plans_lifetime_at_start(quota_gateway, start_gateway, tmp_path):
    """A room made with no expiry under a plan without a lifetime limit gets one when the
    gateway starts again with the limit."""
    unlimited = tmp_path / "unlimited_config.py"
    unlimited.write_text(CONFIG.replace('"max_room_lifetime": 3600', '"max_room_lifetime": 0'))
    gateway = start_gateway("--kernels=docker", f"--config={unlimited}", f"--jwt-secret={SECRET}")
    room = await make_room(gateway.client(token("alice")))
    assert room["expires_at"] is None
    gateway.stop()
    gateway = quota_gateway(like=gateway)
    room = (await gateway.client(token("alice")).request("GET", f"/api/rooms/{room['id']}")).body
    assert room["expires_at"] is not None  # before: None, the room lived forever
    created = datetime.fromisoformat(room["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(room["expires_at"].replace("Z", "+00:00"))
    assert expires - created == timedelta(seconds=3600)


@pytest.mark.parametrize("spec, extra, message", [
    ('{"kernel_tiers": ["low"], "workspace_bytes": 1000}', "", "plan 'free': workspace_bytes must be at least"),
    ('{"kernel_tiers": ["low"], "workspace_inode": 10}', "", "plan 'free': unknown keys workspace_inode"),
    ('{"kernel_tiers": ["low"], "max_snapshots": -1}', "", "plan 'free': max_snapshots must be a whole number"),
    ('{"kernel_tiers": ["low"]}', "c.Plans.order = ['free', 'gold']",
     "Plans.order ['free', 'gold'] must name plans of Plans.plans (free); unknown: gold"),
    ('{"kernel_tiers": ["low"]}', "c.Plans.order = [", "bad_config.py cannot be loaded: SyntaxError"),
], ids=["bytes", "key", "snapshots", "order", "syntax"])
def test_a_bad_plan_stops_the_gateway_at_start(tmp_path, spec, extra, message):
    """Bad plans, and a config file that cannot be loaded at all (before: logged, and the
    gateway ran on defaults), stop the gateway at start, saying why."""
    config = tmp_path / "bad_config.py"
    config.write_text(f"c.Plans.order = ['free']\nc.Plans.plans = {{'free': {spec}}}\n{extra}\n")
    with tempfile.TemporaryDirectory(prefix="kgq", dir="/tmp") as run:  # short: socket paths
        done = subprocess.run(
            [sys.executable, "-m", "kernelgate", "serve", "--no-auth", "--kernels=local", "--port=0",
             f"--config={config}", f"--data-dir={tmp_path / 'data'}", f"--runtime-dir={run}"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )
    assert done.returncode != 0 and message in done.stdout + done.stderr, done.stderr[-2000:]


async def test_a_snapshot_too_big_for_the_new_rooms_quota_is_refused(quota_gateway):
    """A room started from a snapshot of a bigger plan's room: 413, and nothing remains."""
    gateway = quota_gateway()
    bob, alice = gateway.client(token("bob", "big")), gateway.client(token("alice"))
    big = await make_room(bob)
    py = await room_python(bob, big)
    assert (await py.execute(FILL.format(name="large", mib=48))).stdout.split() == ["48", "None"]
    py.close()
    taken = await bob.request("POST", f"/api/rooms/{big['id']}/snapshots")
    assert taken.status == 201, taken.body
    put = await bob.request("PUT", f"/api/rooms/{big['id']}/members/alice", {"role": "admin"})
    assert put.status == 200, put.body
    refused = await alice.request("POST", "/api/rooms", {"name": "small", "languages": ["python3"],
                                                         "from_snapshot": taken.body["id"]})
    assert refused.status == 413, refused.body  # before: 201, 48 MiB in a 32 MiB room
    assert "does not fit the room's workspace" in refused.body["message"]
    assert [r["id"] for r in (await alice.request("GET", "/api/rooms")).body] == [big["id"]]
    assert [p.name for p in (gateway.data_dir / "volumes").iterdir()] == [f"{big['id']}.ext4"]
    assert not _mounts_below(gateway.data_dir / "rooms" / ".restore")


async def test_admins_get_the_highest_plan_when_admin_plan_is_not_configured(start_gateway, tmp_path):
    """Plans without the admin_plan ("team"): an admin (--no-auth's user) gets the highest
    plan of order, and can make a room (before: a 500, KeyError 'team')."""
    config = tmp_path / "config.py"
    config.write_text("c.Plans.plans = {'free': {'kernel_tiers': ['low'], 'max_rooms': 1},"
                      " 'pro': {'kernel_tiers': ['low'], 'max_rooms': 2}}\nc.Plans.order = ['free', 'pro']\n")
    client = start_gateway("--kernels=local", f"--config={config}").client()
    made = [await client.request("POST", "/api/rooms", {"name": f"r{i}", "languages": ["python3"]}) for i in range(3)]
    assert [m.status for m in made] == [201, 201, 429], [m.body for m in made]
    assert "2" in made[2].body["message"], made[2].body  # pro's max_rooms, not free's
    for room in made[:2]:
        assert (await client.request("DELETE", f"/api/rooms/{room.body['id']}")).status == 204
