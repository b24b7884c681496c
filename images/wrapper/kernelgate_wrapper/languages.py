"""The languages the wrapper kernel serves, one :class:`Language` each, by kernelspec name.

A language is either interpreted (``driver``: a script of ``drivers/`` run by ``interpreter``,
see :class:`~kernelgate_wrapper.sessions.InterpreterSession`) or compiled (``toolchain``, see
:class:`~kernelgate_wrapper.sessions.CompiledSession`).  The toolchains are those the
language's image installs, found on PATH; the C and C++ programs link
``STDIO_OBJECT``, which the ``gcc`` image compiles from ``support/line_buffered_stdio.c``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from kernelgate_wrapper.sessions import Toolchain

#: Object file that makes C/C++ stdout line-buffered (built by images/gcc).
STDIO_OBJECT = "/opt/kernelgate/lib/line_buffered_stdio.o"


@dataclass(frozen=True)
class Language:
    name: str  # the kernelspec's name and the --WrapperKernel.language value
    display_name: str
    #: kernel_info's language_info, except "version" (asked of version_command at start)
    language_info: dict
    #: prints the toolchain's version: the first dotted number of its output is used
    version_command: tuple[str, ...]
    interpreter: tuple[str, ...] = ()  # interpreted: the command that runs a driver file
    driver: str = ""  # interpreted: file name in drivers/
    toolchain: Toolchain | None = None  # compiled


def _info(name: str, mimetype: str, extension: str, codemirror: str, pygments: str) -> dict:
    return {"name": name, "mimetype": mimetype, "file_extension": extension,
            "codemirror_mode": codemirror, "pygments_lexer": pygments}


LANGUAGES = {
    lang.name: lang
    for lang in [
        Language(
            "c", "C (gcc)", _info("c", "text/x-csrc", ".c", "text/x-csrc", "c"),
            ("gcc", "-dumpfullversion"),
            toolchain=Toolchain("c", "main.c", (
                "gcc", "-std=gnu17", "-O1", "-pipe", "-o", "{binary}", "{source}", STDIO_OBJECT, "-lm")),
        ),
        Language(
            "cpp", "C++ (g++)", _info("c++", "text/x-c++src", ".cpp", "text/x-c++src", "cpp"),
            ("g++", "-dumpfullversion"),
            toolchain=Toolchain("cpp", "main.cpp", (
                "g++", "-std=gnu++20", "-O1", "-pipe", "-o", "{binary}", "{source}", STDIO_OBJECT)),
        ),
        Language(
            "go", "Go", _info("go", "text/x-go", ".go", "go", "go"),
            ("go", "env", "GOVERSION"),
            toolchain=Toolchain("go", "main.go", (
                "go", "build", "-o", "{binary}", "-ldflags=-s -w", "{source}")),
        ),
        Language(
            "rust", "Rust", _info("rust", "text/rust", ".rs", "rust", "rust"),
            ("rustc", "--version"),
            toolchain=Toolchain("rust", "main.rs", (
                "rustc", "--edition=2021", "-C", "opt-level=1", "-o", "{binary}", "{source}")),
        ),
        Language(
            "ruby", "Ruby", _info("ruby", "text/x-ruby", ".rb", "ruby", "ruby"),
            ("ruby", "-e", "print RUBY_VERSION"),
            interpreter=("ruby",), driver="ruby.rb",
        ),
        Language(
            "php", "PHP", _info("php", "application/x-httpd-php", ".php", "php", "php"),
            ("php", "-r", "echo PHP_VERSION;"),
            interpreter=("php", "-d", "display_errors=stderr", "-d", "log_errors=0", "-d", "error_reporting=-1"),
            driver="php.php",
        ),
        Language(
            "perl", "Perl", _info("perl", "text/x-perl", ".pl", "perl", "perl"),
            ("perl", "-e", "print $^V"),
            interpreter=("perl",), driver="perl.pl",
        ),
        Language(
            "lua", "Lua", _info("lua", "text/x-lua", ".lua", "lua", "lua"),
            ("lua5.4", "-v"),
            interpreter=("lua5.4",), driver="lua.lua",
        ),
        Language(
            "sqlite", "SQLite", _info("sql", "application/sql", ".sql", "sql", "sql"),
            (sys.executable, "-c", "import sqlite3; print(sqlite3.sqlite_version)"),
            interpreter=(sys.executable,), driver="sqlite.py",
        ),
    ]
}
