"""Kernels on a Docker engine with userns-remap: a second dockerd of this host
(tests/dockerd.py), started for these tests with `--userns-remap=default` on its own
socket, data root, exec root and network namespace (the machine's main dockerd is not
touched).

Its data root (/var/lib/kg-userns) is kept between runs so that the python image is
loaded into it once (`docker save | docker load`, when its tag is missing); the daemon is
stopped after the module. Under remap, container uid 1000 is host uid (dockremap's
subordinate start + 1000): the gateway must give the kernel's socket folder and the
room's workspace to that host uid, and the kernel's processes must run as it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kernelgate.engine import KERNEL_LABEL
from kernelgate.userns import IdMap, engine_map
from tests.ci import require
from tests.dockerd import PrivateDockerd
from tests.test_rooms import CONFIG, SECRET, kernel_of, make_room, users

DAEMON = PrivateDockerd("kg-userns", "--userns-remap=default")  # /run/kg-userns, /var/lib/kg-userns
URL = DAEMON.url
CONTAINER_UID = 1000


@pytest.fixture(scope="module")
def remapped_engine(docker_engine):
    """A running dockerd with userns-remap holding the python image; stopped afterwards,
    with no container left in it."""
    bridge = Path("/sys/class/net/docker0")  # the main engine's default bridge
    had_bridge = bridge.exists()
    try:
        DAEMON.start()
    except RuntimeError as e:
        require(str(e))
    assert bridge.exists() or not had_bridge, "starting the second dockerd removed the host's docker0"
    client = DAEMON.client()
    try:
        from kernelgate.images import ImageBuilder

        DAEMON.load_images(ImageBuilder().reference("python"))
        yield client
        left = DAEMON.remove_containers()
        assert not left, f"containers left in the remapped engine: {left}"
    finally:
        client.close()
        DAEMON.stop()


def _processes_of(container_id: str) -> dict[int, list[int]]:
    """pid -> [real, effective, saved, fs uid] of every host process in the container."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if container_id not in (entry / "cgroup").read_text():
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue  # it ended meanwhile
        line = next(x for x in status.splitlines() if x.startswith("Uid:"))
        found[int(entry.name)] = [int(v) for v in line.split()[1:]]
    return found


def _socket_folder_owner(kernel_folder: Path) -> tuple[int, int]:
    """uid and gid of the tmpfs mounted on the kernel's socket folder (mountinfo options)."""
    target = str(kernel_folder.resolve() / "ipc")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == target:
            options = dict(o.split("=", 1) for o in fields[-1].split(",") if "=" in o)
            return int(options.get("uid", 0)), int(options.get("gid", 0))
    raise AssertionError(f"no tmpfs on {target}")


def test_engine_map_reads_docker_info(tmp_path):
    """The derivation (kernelgate.userns): no remap is the identity; a remapped engine's
    root folder names container root, and the remap user's ranges are laid end to end
    in ascending order."""
    assert engine_map({"SecurityOptions": ["name=seccomp,profile=default"]}) == IdMap()
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:200000:65536\ndockremap:300000:1000\ndockremap:100000:1000\n")
    mapping = engine_map({"SecurityOptions": ["name=userns"], "DockerRootDir": "/d/100000.100000"},
                         str(subuid), str(tmp_path / "missing"))
    assert [mapping.host(i) for i in (0, 999, 1000, 1999)] == [100000, 100999, 300000, 300999]
    assert mapping.host(1000, gid=True) == 101000  # no subgid file: one range from root
    with pytest.raises(ValueError):
        mapping.host(2000)


async def test_kernels_under_userns_remap(remapped_engine, start_gateway, tmp_path):
    info = remapped_engine.info()
    mapping = engine_map(info)
    host_uid = mapping.host(CONTAINER_UID)
    assert host_uid != CONTAINER_UID, info.get("SecurityOptions")
    config = tmp_path / "userns_config.py"
    config.write_text(CONFIG)
    gateway = start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}",
                            f"--DockerEngine.docker_url={URL}")
    (alice,) = users(gateway, "alice")
    # a solo kernel: it binds its sockets in its socket folder, the remapped uid's tmpfs
    solo = (await alice.start_kernel())["id"]
    ws = await alice.connect(solo)
    run = await ws.execute("import os\nopen(os.path.expanduser('~/h'), 'w').write('h')\nprint(os.getuid())")
    assert run.stdout == f"{CONTAINER_UID}\n", (run.stdout, gateway.log())
    ws.close()
    assert _socket_folder_owner(gateway.runtime_dir / solo) == (host_uid, mapping.host(CONTAINER_UID, gid=True))
    (container,) = remapped_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={solo}"})
    assert set(map(tuple, _processes_of(container.id).values())) == {(host_uid,) * 4}
    assert (await alice.request("DELETE", f"/api/kernels/{solo}")).status == 204
    room = await make_room(alice, ["python3"])
    kid = kernel_of(room, "python3")
    try:
        ws = await alice.connect(kid)
        run = await ws.execute("import os\nopen('/workspace/made.txt', 'w').write('x')\n"
                               "print(os.getuid(), os.stat('/workspace/made.txt').st_uid)")
        assert run.stdout == f"{CONTAINER_UID} {CONTAINER_UID}\n", (run.stdout, gateway.log())
        # from the host: the kernel's processes and its file belong to the remapped uid
        (container,) = remapped_engine.containers.list(filters={"label": f"{KERNEL_LABEL}={kid}"})
        processes = _processes_of(container.id)
        assert processes and all(ids == [host_uid] * 4 for ids in processes.values()), processes
        working_copy = gateway.data_dir / "rooms" / room["id"]
        made = os.stat(working_copy / "made.txt")
        assert (made.st_uid, made.st_gid) == (host_uid, mapping.host(CONTAINER_UID, gid=True))
        ws.close()
        # a restart gets a new socket folder, again the remapped uid's
        response = await alice.request("POST", f"/api/kernels/{kid}/restart")
        assert response.status == 200, (response.body, gateway.log())
        ws = await alice.connect(kid)
        assert (await ws.execute("print(open('/workspace/made.txt').read())")).stdout == "x\n"
        ws.close()
    finally:
        assert (await alice.request("DELETE", f"/api/rooms/{room['id']}")).status == 204


def test_gateway_derives_the_mapping_from_the_remapped_engine(remapped_engine):
    """UserNamespace asks the engine itself: container uid 1000 is the host uid that
    dockremap's range gives it; a uid outside the range is refused (JSON 503), not
    silently given to a host uid."""
    from kernelgate.engine import DockerEngine
    from kernelgate.errors import Unavailable
    from kernelgate.userns import UserNamespace

    subuid = next(line.split(":") for line in Path("/etc/subuid").read_text().splitlines()
                  if line.startswith("dockremap:"))
    engine = DockerEngine(docker_url=URL)
    assert UserNamespace().ids(engine, CONTAINER_UID)[0] == int(subuid[1]) + CONTAINER_UID
    with pytest.raises(Unavailable):
        UserNamespace().ids(engine, 1 << 20)
    assert UserNamespace(host_uid=4242).ids(engine, CONTAINER_UID) == (4242, 4242)


def _mirror(root: Path) -> None:
    """An air-gapped pip index at root/simple holding one tiny wheel, kgtiny 1.0, readable
    by every uid (the install container's host uid is the remapped one)."""
    import base64
    import hashlib
    import zipfile

    folder = root / "simple" / "kgtiny"
    folder.mkdir(parents=True)
    files = {"kgtiny.py": b"VALUE = 42\n",
             "kgtiny-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: kgtiny\nVersion: 1.0\n",
             "kgtiny-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()) + "kgtiny-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(folder / "kgtiny-1.0-py3-none-any.whl", "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("kgtiny-1.0.dist-info/RECORD", record)
    (folder / "index.html").write_text('<a href="kgtiny-1.0-py3-none-any.whl">kgtiny-1.0-py3-none-any.whl</a>\n')
    (root / "simple" / "index.html").write_text('<a href="kgtiny/">kgtiny</a>\n')
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


async def test_install_under_userns_remap(remapped_engine, start_gateway, tmp_path):
    """An air-gapped install (network 'none', a mirror folder): its staging area is the
    remapped uid's, so the install container writes it, and what it installs into the
    room's workspace is owned by the remapped uid."""
    import tempfile

    from tests.test_environment import install, put_file

    host_uid = engine_map(remapped_engine.info()).host(CONTAINER_UID)
    mirror = Path(tempfile.mkdtemp(prefix="kg-mirror-", dir="/tmp"))
    try:
        _mirror(mirror)
        config = tmp_path / "userns_config.py"
        config.write_text(CONFIG + f"c.EnvironmentService.network = 'none'\n"
                          f"c.EnvironmentService.mirror_dir = {str(mirror)!r}\n"
                          "c.EnvironmentService.pip_index_url = 'file:///mirror/simple'\n")
        gateway = start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}",
                                f"--DockerEngine.docker_url={URL}")
        (alice,) = users(gateway, "alice")
        room = await make_room(alice, ["python3"])
        try:
            await put_file(alice, room["id"], "requirements.txt", "kgtiny==1.0\n")
            progress, result = await install(alice, room["id"])
            assert result["status"] == "ok", (result, progress[-5:], gateway.log()[-3000:])
            ws = await alice.connect(kernel_of(room, "python3"))
            assert (await ws.execute("import kgtiny; print(kgtiny.VALUE)")).stdout == "42\n"
            ws.close()
            installed = list((gateway.data_dir / "rooms" / room["id"] / ".kernelgate").rglob("kgtiny.py"))
            assert installed and all(os.stat(p).st_uid == host_uid for p in installed), installed
        finally:
            assert (await alice.request("DELETE", f"/api/rooms/{room['id']}")).status == 204
    finally:
        shutil.rmtree(mirror, ignore_errors=True)
