"""Room storage below the gateway: no-follow archives, and the three backends' contract
(local folder, the database on SQLite and PostgreSQL, S3 on a moto server)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from kernelgate.storage.archive import ArchiveError, fingerprint, pack, unpack
from kernelgate.storage.backend import ObjectMissing, StorageUnavailable
from kernelgate.storage.database import DatabaseBackend
from kernelgate.storage.local import LocalBackend
from kernelgate.storage.s3 import S3Backend
from kernelgate.storage.service import _upload
from kernelgate.store import Store
from tests.s3 import ACCESS_KEY, SECRET_KEY


def tree(root: Path) -> dict[str, str]:
    """path -> kind:content-hash (or link target) of the folders, regular files and links
    under root, no-follow."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            elif path.is_file():
                found[rel] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "workspace"
    (root / "src" / "deep" / "er").mkdir(parents=True)
    (root / "README.md").write_text("hello\n")
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "deep" / "er" / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    (root / "empty").write_bytes(b"")
    (root / "src" / "link-in").symlink_to("main.py")
    (root / "secret-link").symlink_to(tmp_path / "outside.txt")
    (tmp_path / "outside.txt").write_text("the host's secret")
    os.mkfifo(root / "pipe")
    return root


# -- archives -----------------------------------------------------------------------------


def test_pack_and_unpack_keep_the_tree_and_never_follow_links(workspace, tmp_path):
    archive = io.BytesIO()
    stats = pack(str(workspace), archive)
    assert (stats.files, stats.links) == (4, 2)  # the FIFO is left out
    assert b"the host's secret" not in archive.getvalue()  # a link is stored as a link
    target = tmp_path / "restored"
    target.mkdir()
    archive.seek(0)
    unpack(archive, str(target), None)
    assert tree(target) == tree(workspace)
    assert not (target / "pipe").exists()
    assert os.readlink(target / "secret-link") == str(tmp_path / "outside.txt")


def hostile(*members: tuple[str, str, str]) -> io.BytesIO:
    """A tar stream of (name, kind, content-or-link-target) members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, value
                tar.addfile(info)
            else:
                data = value.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


@pytest.mark.parametrize("members", [
    [("../escaped.txt", "file", "x")],
    [("/tmp/escaped.txt", "file", "x")],
    [("a/../../escaped.txt", "file", "x")],
    [("out", "link", ".."), ("out/escaped.txt", "file", "x")],
    [("out", "link", "/"), ("out/tmp/escaped.txt", "file", "x")],
    [("victim", "link", "../escaped.txt"), ("victim", "file", "x")],
])
def test_an_archive_cannot_write_outside_its_target(tmp_path, members):
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ArchiveError):
        unpack(hostile(*members), str(target), None)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/escaped.txt").exists()


def test_hard_links_in_an_archive_are_skipped(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    unpack(hostile(("shadow", "hardlink", "/etc/shadow"), ("ok.txt", "file", "fine")), str(target), None)
    assert sorted(os.listdir(target)) == ["ok.txt"]


def test_a_damaged_archive_is_an_archive_error(tmp_path):
    with pytest.raises(ArchiveError):
        unpack(io.BytesIO(b"not a tar" * 100), str(tmp_path), None)


def test_fingerprint_follows_changes(workspace):
    before = fingerprint(str(workspace))
    assert fingerprint(str(workspace)) == before
    (workspace / "src" / "main.py").write_text("print('changed, longer')\n")
    assert fingerprint(str(workspace)) != before


# -- backends -----------------------------------------------------------------------------


@pytest.fixture(params=["local", "database-sqlite", "database-postgresql", "s3"])
def backend(request, tmp_path, io_loop):
    if request.param == "local":
        yield LocalBackend(root=str(tmp_path / "objects"))
    elif request.param.startswith("database"):
        if request.param.endswith("postgresql"):
            server = request.getfixturevalue("postgres_server")
            store = Store(url=server.url(server.create_database()))
        else:
            store = Store(data_dir=str(tmp_path))
        io_loop.run_sync(store.migrate)
        yield DatabaseBackend(store.engine)
        io_loop.run_sync(store.close)
    else:
        s3 = request.getfixturevalue("s3_server")
        yield S3Backend(endpoint_url=s3.url, bucket="test", access_key_id=ACCESS_KEY,
                        secret_access_key=SECRET_KEY, part_size=5 * 1024 * 1024)


class Failing:
    """A source that breaks after `good` bytes."""

    def __init__(self, good: int) -> None:
        self.left = good

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise OSError("the source broke")
        n = min(n if n > 0 else self.left, self.left)
        self.left -= n
        return b"x" * n


def read_all(backend, key: str) -> bytes:
    with backend.open(key) as source:
        parts = []
        while chunk := source.read(1 << 20):
            parts.append(chunk)
    return b"".join(parts)


def test_backend_contract(backend):
    data = os.urandom(13 * 1024 * 1024 + 11)  # several chunks, several S3 parts
    assert backend.put("rooms/r1/current.tar", io.BytesIO(data)) == len(data)
    assert read_all(backend, "rooms/r1/current.tar") == data
    assert backend.put("rooms/r1/current.tar", io.BytesIO(b"v2")) == 2
    assert read_all(backend, "rooms/r1/current.tar") == b"v2"
    with pytest.raises(ObjectMissing):
        backend.open("rooms/r1/other.tar")
    # a put whose source breaks leaves the key as it was
    with pytest.raises((StorageUnavailable, OSError)):
        backend.put("rooms/r1/current.tar", Failing(9 * 1024 * 1024))
    assert read_all(backend, "rooms/r1/current.tar") == b"v2"
    with pytest.raises((StorageUnavailable, OSError)):
        backend.put("rooms/r1/new.tar", Failing(100))
    with pytest.raises(ObjectMissing):
        backend.open("rooms/r1/new.tar")
    backend.delete("rooms/r1/current.tar")
    backend.delete("rooms/r1/current.tar")
    with pytest.raises(ObjectMissing):
        backend.open("rooms/r1/current.tar")
    backend.check()
    with pytest.raises(ValueError):
        backend.put("../escape", io.BytesIO(b""))


def test_upload_streams_a_workspace_with_its_digest(backend, workspace, tmp_path):
    size, digest, stats = _upload(backend, "rooms/r/snapshots/s.tar", workspace)
    archive = read_all(backend, "rooms/r/snapshots/s.tar")
    assert (len(archive), hashlib.sha256(archive).hexdigest()) == (size, digest)
    assert stats.files == 4
    target = tmp_path / "restored"
    target.mkdir()
    with backend.open("rooms/r/snapshots/s.tar") as source:
        unpack(source, str(target), None)
    assert tree(target) == tree(workspace)


def test_unreachable_s3_is_storage_unavailable():
    backend = S3Backend(endpoint_url="http://127.0.0.1:9", bucket="unreachable", access_key_id=ACCESS_KEY,
                        secret_access_key=SECRET_KEY, connect_timeout=0.5)
    with pytest.raises(StorageUnavailable):
        backend.check()
    with pytest.raises(StorageUnavailable):
        backend.put("k", io.BytesIO(b"data"))
    with pytest.raises(StorageUnavailable):
        backend.open("k")


def test_s3_bucket_lost_while_running_is_recreated(s3_server):
    backend = S3Backend(endpoint_url=s3_server.url, bucket="lost-bucket", access_key_id=ACCESS_KEY,
                        secret_access_key=SECRET_KEY)
    backend.put("k", io.BytesIO(b"one"))
    s3_server.stop()
    s3_server.start()  # moto starts empty: the bucket is gone
    backend.put("k", io.BytesIO(b"two"))
    assert read_all(backend, "k") == b"two"
