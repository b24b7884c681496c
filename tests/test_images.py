"""Tests of kernelgate.images: image references, builds on the real base image, listing,
and the Python kernel image under the sandbox options kernel containers run with."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from kernelgate.images import ImageBuildError, ImageBuilder, ImageError
from kernelgate.sandbox import Mount, SandboxSpec
from kernelgate.tiers import Tiers
from tests.ci import require

REPO_IMAGES = Path(__file__).resolve().parent.parent / "images"
#: What kernel containers run under (the default tier's sandbox).
SANDBOX = SandboxSpec.for_tier(Tiers().get(None))


@pytest.fixture(scope="session")
def docker_client():
    """A reachable Docker engine: fails the test under CI=true, else skips it."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        require(f"Docker engine not reachable: {e}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def python_image(docker_client):
    """Reference of the repository's python image, built (with base) if missing."""
    builder = ImageBuilder()
    builder.build(["python"])
    return builder.reference("python")


@pytest.fixture
def images_copy(tmp_path):
    """A copy of the repository's images/ folder."""
    copy = tmp_path / "images"
    shutil.copytree(REPO_IMAGES, copy)
    return copy


def add_image(images_dir: Path, name: str, dockerfile: str, parent: str = "base") -> None:
    folder = images_dir / name
    folder.mkdir()
    (folder / "image.json").write_text(json.dumps({"parent": parent}))
    (folder / "Dockerfile").write_text(dockerfile)


@pytest.fixture
def tiny(images_copy, docker_client):
    """(builder, name) of a tiny image on the real base, unique to this test; removed afterwards."""
    name = "tiny"
    add_image(
        images_copy,
        name,
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        f"RUN echo {uuid.uuid4().hex} > /home/kernel/marker\n",
    )
    builder = ImageBuilder(images_dir=str(images_copy))
    yield builder, name
    try:
        docker_client.images.remove(builder.reference(name), force=True)
    except docker.errors.ImageNotFound:
        pass


def test_names_and_parents():
    builder = ImageBuilder()
    names = builder.names()
    assert {"base", "python"} <= set(names)
    assert names.index("base") < names.index("python")
    assert builder.parent_of("base") is None
    assert builder.parent_of("python") == "base"
    with pytest.raises(ImageError, match="unknown image"):
        builder.reference("no-such-image")


def test_parent_cycle_is_an_error(images_copy):
    add_image(images_copy, "a", "FROM x\n", parent="b")
    add_image(images_copy, "b", "FROM x\n", parent="a")
    with pytest.raises(ImageError, match="cycle"):
        ImageBuilder(images_dir=str(images_copy)).names()


def test_reference_is_deterministic(images_copy):
    original = ImageBuilder()
    copied = ImageBuilder(images_dir=str(images_copy))
    for name in original.names():
        ref = original.reference(name)
        assert re.fullmatch(rf"kernelgate/{name}:[0-9a-f]{{12}}", ref)
        assert copied.reference(name) == ref  # another path, same contents
        assert ImageBuilder().reference(name) == ref
    later = time.time() + 1000
    for path in images_copy.rglob("*"):
        os.utime(path, (later, later))
    touched = ImageBuilder(images_dir=str(images_copy))
    assert touched.reference("python") == original.reference("python")
    assert ImageBuilder().references() == {name: original.reference(name) for name in original.names()}


def test_reference_changes_with_folder_and_parent(images_copy):
    before = ImageBuilder(images_dir=str(images_copy))
    base, python = before.reference("base"), before.reference("python")

    with open(images_copy / "python" / "Dockerfile", "a") as f:
        f.write("# changed\n")
    after_child = ImageBuilder(images_dir=str(images_copy))
    assert after_child.reference("base") == base
    assert after_child.reference("python") != python

    (images_copy / "base" / "extra.txt").write_text("new file\n")
    after_parent = ImageBuilder(images_dir=str(images_copy))
    assert after_parent.reference("base") != base
    assert after_parent.reference("python") != after_child.reference("python")

    (images_copy / "base" / "extra.txt").chmod(0o755)
    after_chmod = ImageBuilder(images_dir=str(images_copy))
    assert after_chmod.reference("base") != after_parent.reference("base")


def test_reference_changes_with_debian_settings():
    default = ImageBuilder()
    for settings in ({"debian_suite": "trixie"}, {"debian_mirror": "http://mirror.invalid/debian"}):
        other = ImageBuilder(**settings)
        assert other.rootfs_reference() != default.rootfs_reference()
        for name in default.names():
            assert other.reference(name) != default.reference(name)
    assert ImageBuilder(repository="acme").reference("base").startswith("acme/base:")


def test_build_skips_built_images_and_list_reports_them(tiny, docker_client):
    builder, name = tiny
    ref = builder.reference(name)
    assert {"name": name, "reference": ref, "built": False, "size": None} in builder.list()

    lines = []
    built = builder.build([name], progress=lines.append)
    assert built[-1] == ref
    assert any(line.startswith("Step ") for line in lines)
    labels = docker_client.images.get(ref).labels
    assert labels["org.kernelgate.image"] == name
    assert labels["org.kernelgate.inputs"] == ref.rsplit(":", 1)[1]

    lines.clear()
    assert builder.build([name], progress=lines.append) == []
    assert f"==> {ref}: already built" in lines
    assert f"==> {builder.reference('base')}: already built" in lines

    rows = {row["name"]: row for row in builder.list()}
    assert rows[name]["built"] is True
    assert rows[name]["size"] >= rows["base"]["size"] > 0


def test_prune_removes_old_tags_only(python_image, docker_client):
    """Old tags of the repository go; the current one, an old image a container still
    uses and other repositories' images stay. The test's own repository keeps the
    machine's images out of it."""
    repository = f"kgprune{uuid.uuid4().hex[:8]}"
    builder = ImageBuilder(repository=repository)
    image = docker_client.images.get(python_image)
    current = builder.reference("python")
    old, used = f"{repository}/python:000000000000", f"{repository}/python:111111111111"
    stranger = f"{repository}/not-an-image:000000000000"
    for ref in (current, old, stranger):
        image.tag(ref)
    scratch = docker_client.containers.create(python_image, ["true"])
    used_image = scratch.commit(repository=f"{repository}/python", tag="111111111111")  # an image of its own
    user = docker_client.containers.create(used, ["true"])  # e.g. a room kernel from before an upgrade
    try:
        assert builder.prune(dry_run=True) == [(old, "would remove"), (used, "would remove")]
        assert builder.prune() == [(old, "removed"), (used, "in use")]
        tags = set(docker_client.images.get(python_image).tags)
        assert {current, stranger} <= tags and old not in tags
        assert docker_client.images.get(used_image.id).tags == [used]
    finally:
        for container in (user, scratch):
            container.remove(force=True)
        docker_client.images.remove(used_image.id, force=True)
        for ref in (current, old, stranger):
            try:
                docker_client.images.remove(ref)
            except docker.errors.ImageNotFound:
                pass


def test_build_failure_names_the_step(images_copy, docker_client):
    add_image(
        images_copy,
        "broken",
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo output-of-the-step && exit 3\n",
    )
    builder = ImageBuilder(images_dir=str(images_copy))
    builder.build(["base"])
    with pytest.raises(ImageBuildError) as failure:
        builder.build(["broken"])
    message = str(failure.value)
    assert builder.reference("broken") in message
    assert "RUN echo output-of-the-step" in message
    assert "non-zero code: 3" in message
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(builder.reference("broken"))


def test_python_image_runs_sandboxed(python_image, docker_client):
    script = (
        "import ipykernel, numpy, os, sys; print(sys.version); "
        "print(os.getuid(), os.getgid(), sys.prefix, os.getcwd(), os.environ['HOME'])"
    )
    output = docker_client.containers.run(
        python_image, ["python", "-c", script], remove=True, **SANDBOX.run_options()
    ).decode()
    version, ids = output.splitlines()
    assert re.match(r"3\.\d+\.\d+ ", version)
    assert ids == "1000 1000 /opt/kernelgate/venv /home/kernel /home/kernel"


def test_python_image_has_no_build_leftovers(python_image, docker_client):
    """The build's CA copy (under /tmp) and apt's package lists are gone from the image itself."""
    output = docker_client.containers.run(
        python_image,
        ["python", "-c", "import os; print(os.listdir('/tmp'), os.listdir('/var/lib/apt/lists'))"],
        remove=True,
        network_mode="none",
    ).decode()
    assert output.strip() == "[] []"


def test_python_kernel_executes_code_in_sandbox(python_image, docker_client):
    """The python image's kernel command serves a client over ipc sockets in a shared folder."""
    with tempfile.TemporaryDirectory(prefix="kernelgate-test-") as folder:
        os.chmod(folder, 0o777)
        connection_file, _ = write_connection_file(
            os.path.join(folder, "kernel.json"), transport="ipc", ip=os.path.join(folder, "kernel")
        )
        os.chmod(connection_file, 0o644)
        container = docker_client.containers.run(
            python_image,
            ["python", "-m", "ipykernel_launcher", "-f", connection_file],
            detach=True,
            **SANDBOX.with_mounts(Mount(folder, folder, writable=True)).run_options(),
        )
        client = BlockingKernelClient(connection_file=connection_file)
        client.load_connection_file()
        client.start_channels(hb=False)  # a heartbeat judges a container slow to start as dead
        try:
            client.wait_for_ready(timeout=60)
            outputs = []
            reply = client.execute_interactive(
                "import numpy, os; print(int(numpy.arange(4).sum()), os.getuid())",
                timeout=60,
                output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
            )
            assert reply["content"]["status"] == "ok"
            assert "".join(outputs).strip() == "6 1000"
        finally:
            client.stop_channels()
            container.remove(force=True)


def test_cli_list(python_image):
    result = subprocess.run(
        [sys.executable, "-m", "kernelgate.images", "list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_IMAGES.parent,
    )
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "REFERENCE", "BUILT", "SIZE", "MB"]
    python_row = next(row.split() for row in rows if row.startswith("python "))
    assert python_row[:3] == ["python", python_image, "yes"]
    assert int(python_row[3]) > 0


def test_cli_build_unknown_image_fails():
    result = subprocess.run(
        [sys.executable, "-m", "kernelgate.images", "build", "no-such-image"],
        capture_output=True,
        text=True,
        cwd=REPO_IMAGES.parent,
    )
    assert result.returncode == 1
    assert "unknown image 'no-such-image'" in result.stderr
