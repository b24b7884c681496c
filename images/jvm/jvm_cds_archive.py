"""Build-time only: record a class-data-sharing (AppCDS) archive of a JVM kernel.

Usage: python jvm_cds_archive.py ARCHIVE LANGUAGE -- COMMAND...

COMMAND starts the kernel, with ``{connection_file}`` where its connection file goes, and
makes its JVM record ARCHIVE on exit (``-XX:ArchiveClassesAtExit=ARCHIVE``, on the java
command line or in the launcher's JVM options). This script starts it with a loopback
TCP connection file, runs LANGUAGE's typical cells (output, definitions, a class,
collections, a compile error, a runtime error), then stops it with SIGTERM so that the
JVM writes the archive, and waits for every process of the kernel (this process is
their subreaper) to end. Kernels started with ``-XX:SharedArchiveFile=ARCHIVE`` (same
JDK, heap under 32 GB) map those classes instead of loading and verifying them. Exits
non-zero if a cell gets no reply or no archive is written.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile

from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

#: Cells exercising what most notebooks use; the classes they load end up in the archive.
CELLS = {
    "kotlin": [
        'println("hello")',
        "val x = 41",
        "fun answer() = x + 1",
        "data class Point(val x: Int, val y: Int)",
        "listOf(Point(3, 1), Point(1, 2)).sortedBy { it.x }.map { it.y * answer() }",
        '"%d items".format(mapOf("a" to 1).size)',
        "val = 1",
        'error("boom")',
    ],
    "java": [
        'System.out.println("hello");',
        "int x = 41;",
        "int answer() { return x + 1; }",
        "record Point(int x, int y) {}",
        "java.util.List.of(new Point(3, 1), new Point(1, 2)).stream()"
        ".sorted(java.util.Comparator.comparingInt(Point::x)).map(p -> p.y() * answer()).toList()",
        'String.format("%d items", java.util.Map.of("a", 1).size())',
        "int = 1;",
        'throw new IllegalStateException("boom");',
    ],
}
#: Seconds the kernel gets to start, and each cell to answer.
TIMEOUT = 300
#: prctl(2) option: orphaned descendants are re-parented to this process (Linux).
PR_SET_CHILD_SUBREAPER = 36


def wait_for_descendants() -> None:
    """Reap children (and orphaned grandchildren) until none is left."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main(archive: str, language: str, command: list[str]) -> int:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    with tempfile.TemporaryDirectory(prefix="jvm-cds-") as tmp:
        connection_file, _ = write_connection_file(
            os.path.join(tmp, "kernel.json"), ip="127.0.0.1", key=os.urandom(16).hex().encode()
        )
        argv = [part.replace("{connection_file}", connection_file) for part in command]
        kernel = subprocess.Popen(argv, start_new_session=True)
        client = BlockingKernelClient(connection_file=connection_file)
        client.load_connection_file()
        client.start_channels(hb=False)
        try:
            client.kernel_info()
            client.get_shell_msg(timeout=TIMEOUT)
            for code in CELLS[language]:
                reply = client.execute_interactive(code, timeout=TIMEOUT, output_hook=lambda msg: None)
                print(f"{code!r}: {reply['content']['status']}", flush=True)
        finally:
            client.stop_channels()
            os.killpg(kernel.pid, signal.SIGTERM)  # the launcher, if any, and the JVM
            wait_for_descendants()
    if not os.path.isfile(archive):
        print(f"no archive written at {archive}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 4 or args[2] != "--" or args[1] not in CELLS:
        sys.exit(f"usage: {sys.argv[0]} ARCHIVE {{{','.join(CELLS)}}} -- COMMAND...")
    sys.exit(main(args[0], args[1], args[3:]))
