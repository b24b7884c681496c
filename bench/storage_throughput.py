"""Room storage throughput per backend: snapshot, and restore, of a workspace of mixed
file sizes (default 200 MB), through `RoomStorage` as the gateway runs it.

    python -m bench.storage_throughput                        # 200 MB, every backend
    python -m bench.storage_throughput --size-mb 1024 --files 10000 --backends local

Backends: local (a folder), database on SQLite, database on PostgreSQL (a throwaway
server, when Debian's postgresql is installed), s3 (a moto server on 127.0.0.1). Each
timed operation is the public one:
- snapshot: `RoomStorage.snapshot` (pack the working copy, stream it to the backend);
- fetch: `RoomStorage.prepare` on a room whose working copy was deleted (stream the
  durable copy back and unpack it): what a gateway host that has never seen the room does;
- restore: `RoomStorage.restore` of the snapshot, as the API runs it: a safety snapshot
  of the current working copy, the unpack, then a sync of the durable copy (so about
  three times the bytes of a snapshot).
MB/s counts the workspace's file bytes once per operation (1 MB = 10^6 bytes). Every
restored tree is checked file by file against the original. "RSS growth" is the rise of
the process's peak RSS during the backend's operations: the streams' buffers, since
files are never held whole.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from kernelgate.storage import RoomStorage
from kernelgate.store import Store
from tests.postgres import PostgresServer, postgres_bindir  # throwaway servers
from tests.s3 import S3Server

MB = 1_000_000


def make_workspace(root: Path, size: int, files: int, seed: int = 1) -> int:
    """Files of mixed sizes in nested folders, `size` bytes in all; returns the bytes."""
    rng = random.Random(seed)
    large = max(1, files // 200)  # a few big files hold half of the bytes
    sizes = [size // 2 // large] * large
    small_total = size - sum(sizes)
    weights = [rng.paretovariate(1.2) for _ in range(files - large)]
    scale = small_total / sum(weights)
    sizes += [int(w * scale) for w in weights]
    block = os.urandom(1 << 20)
    for i, n in enumerate(sizes):
        folder = root / f"d{i % 17}" / f"e{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"f{i}.dat", "wb") as out:
            out.write(i.to_bytes(8, "little"))  # no two files alike
            left = max(0, n - 8)
            while left:
                out.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    return sum(max(n, 8) for n in sizes)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for folder, dirs, names in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            digest.update(str(path.relative_to(root)).encode())
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_backend(name: str, store: Store, workdir: Path, source: Path, total: int,
                      digest: str, config: dict) -> dict:
    # plain folders: this measures archives and backends, and replaces the working copy
    # with shutil (a loop volume would stay mounted on it)
    storage = RoomStorage(store, None, rooms_dir=str(workdir / "rooms"), workspace_quotas="off", **config)
    kind = "database" if name.startswith("database") else name
    room = "bench-room"
    working = storage.working_copy(room)
    shutil.copytree(source, working, symlinks=True)
    rss_before = peak_rss_mb()
    result = {"backend": name}

    started = time.perf_counter()
    snapshot = await storage.snapshot(room, kind, "bench")
    result["snapshot"] = total / MB / (time.perf_counter() - started)

    await storage.sync(room, kind)
    shutil.rmtree(working)
    started = time.perf_counter()
    await storage.prepare(room, kind)
    result["fetch"] = total / MB / (time.perf_counter() - started)
    assert tree_digest(working) == digest, "fetched tree differs"

    for path in list(working.rglob("*.dat"))[::3]:
        path.unlink()
    started = time.perf_counter()
    await storage.restore(room, kind, snapshot.id, "bench")
    result["restore"] = total / MB / (time.perf_counter() - started)
    assert tree_digest(working) == digest, "restored tree differs"
    result["rss_growth"] = peak_rss_mb() - rss_before
    result["archive_mb"] = snapshot.size / MB
    return result


async def main_async(args) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="kg-storage-bench-", dir=args.tmp))
    servers = []
    results = []
    try:
        source = work / "source"
        source.mkdir()
        total = make_workspace(source, args.size_mb * MB, args.files)
        digest = tree_digest(source)
        print(f"workspace: {total / MB:.0f} MB in {args.files} files; peak RSS so far "
              f"{peak_rss_mb():.0f} MB; load {os.getloadavg()[0]:.2f}", flush=True)
        for name in args.backends:
            config, url = {}, ""
            if name == "database-postgresql":
                bindir = postgres_bindir()
                if bindir is None:
                    print("database-postgresql: skipped (no PostgreSQL installed)")
                    continue
                server = PostgresServer(bindir).start()
                servers.append(server)
                url = server.url(server.create_database())
            if name == "s3":
                server = S3Server(work / "moto.log").start()
                servers.append(server)
                config = {"config": _s3_config(server)}
            folder = work / name
            folder.mkdir()
            store = Store(data_dir=str(folder), url=url)
            await store.migrate()
            try:
                results.append(await run_backend(name, store, folder, source, total, digest, config))
            finally:
                await store.close()
            shutil.rmtree(folder, ignore_errors=True)
            r = results[-1]
            print(f"{name:20} snapshot {r['snapshot']:7.1f} MB/s  fetch {r['fetch']:7.1f} MB/s  "
                  f"restore {r['restore']:7.1f} MB/s  RSS growth {r['rss_growth']:5.0f} MB", flush=True)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results


def _s3_config(server: S3Server):
    from traitlets.config import Config

    from tests.s3 import ACCESS_KEY, SECRET_KEY

    config = Config()
    config.S3Backend.endpoint_url = server.url
    config.S3Backend.bucket = "bench"
    config.S3Backend.access_key_id = ACCESS_KEY
    config.S3Backend.secret_access_key = SECRET_KEY
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200, help="workspace size, MB (10^6 bytes)")
    parser.add_argument("--files", type=int, default=2000, help="number of files")
    parser.add_argument("--backends", nargs="+", default=["local", "database-sqlite", "database-postgresql", "s3"],
                        choices=["local", "database-sqlite", "database-postgresql", "s3"])
    parser.add_argument("--tmp", default="/var/tmp", help="folder for the workspace and the backends' data")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print("\n| backend | snapshot MB/s | fetch MB/s | restore MB/s | peak RSS growth |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['backend']} | {r['snapshot']:.1f} | {r['fetch']:.1f} | {r['restore']:.1f} | "
              f"{r['rss_growth']:.0f} MB |")


if __name__ == "__main__":
    main()
