"""Installers beyond pip and Deno, on real containers and a real Debian mirror: the
package is fetched through the install fence, put into the room's workspace, and used by
the room's kernel with no network.

The Debian mirror is this machine's own apt source (no mirror is named here), as https
(the fence's proxy tunnels CONNECT only), with this machine's apt settings for it."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from kernelgate.environment.egress import address_refusal
from kernelgate.environment.installers import perl
from tests.ci import require
from tests.test_environment import (CONFIG, SECRET, install, kernel_of, make_room, put_file, registry_settings, token,
                                    tree_digest)

APT_SETTINGS = ("Acquire::Check-Valid-Until", "Acquire::Check-Date")


def apt_sources() -> list[tuple[str, list[str]]]:
    """(URI, suites) of this machine's apt sources (deb822 files and sources.list)."""
    found = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes").strip() != "no":
                found += [(uri, fields.get("Suites", "").split()) for uri in fields.get("URIs", "").split()]
    listing = Path("/etc/apt/sources.list")
    for line in listing.read_text().splitlines() if listing.exists() else []:
        match = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if match:
            found.append((match.group(1), [match.group(2)]))
    return found


def debian_settings() -> str:
    """EnvironmentService settings for the Debian installers from this machine's apt."""
    sources = apt_sources()
    main = next((uri for uri, suites in sources if any(not s.endswith("-security") for s in suites)), None)
    security = next((uri for uri, suites in sources if any(s.endswith("-security") for s in suites)), "")
    require(None if main else f"no Debian apt source on this machine: {sources}")

    def https(uri: str) -> str:
        return "https://" + uri.split("://", 1)[1].rstrip("/") if uri else ""

    hosts = {urlsplit(https(uri)).hostname for uri in (main, security) if uri}
    private = sorted(host for host in hosts
                     if any(address_refusal(info[4][0]) for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)))
    dump = subprocess.run(["apt-config", "dump", *APT_SETTINGS], capture_output=True, text=True, timeout=60).stdout
    options = [f"{name}={value}" for name, value in re.findall(r'^(\S+) "([^"]*)";$', dump, re.M) if name in APT_SETTINGS]
    return (f"c.EnvironmentService.debian_mirror = {https(main)!r}\n"
            f"c.EnvironmentService.debian_security_mirror = {https(security)!r}\n"
            f"c.EnvironmentService.apt_options = {options!r}\n"
            f"c.EnvironmentService.egress_private_hosts = {private!r}\n")


@pytest.fixture
def debian_gateway(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "installers_config.py"
    config.write_text(CONFIG.replace('"kernel_tiers": ["low", "medium"]', '"kernel_tiers": ["low", "medium", "high"]')
                      + debian_settings())  # the R kernel is in the high tier
    return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")


def test_perl_module_names_map_to_debian_packages():
    assert perl.candidates("Moo") == ["libmoo-perl"]
    assert perl.candidates("Moose::Util::TypeConstraints") == [
        "libmoose-util-typeconstraints-perl", "libmoose-util-perl", "libmoose-perl"]
    assert perl.candidates("LWP::UserAgent") == ["libwww-perl"]
    assert perl.candidates("Text_CSV::X") == ["libtext-csv-x-perl", "libtext-csv-perl"]
    assert perl.cpanfile(b"requires 'Moo', '2.0';\nrequires \"perl\" => '5.010';\n"
                         b"on 'test' => sub {\n  requires 'Test::Deep';\n};\nrecommends 'JSON::XS';\n"
                         b"requires 'Try::Tiny';\n") == [
        perl.manifests.Package("Moo", "2.0"), perl.manifests.Package("Test::Deep", "", True),
        perl.manifests.Package("JSON::XS", "", True), perl.manifests.Package("Try::Tiny")]


async def test_cpanfile_installed_from_debian_and_used_by_the_perl_kernel(debian_gateway):
    """A module Debian lacks fails the install by name and changes nothing; then Moo and its
    dependencies come from Debian's lib*-perl packages and the kernel uses them offline."""
    alice = debian_gateway.client(token("alice"))
    room = await make_room(alice, ["perl"])
    rid = room["id"]
    await put_file(alice, rid, "cpanfile", "requires 'Moo', '2.0';\nrequires 'Kernelgate::No::Such';\n"
                                           "on 'test' => sub {\n  requires 'Test::Deep';\n};\n")
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    entry = next(e for e in report["languages"] if e["language"] == "perl")
    assert entry["package_manager"] == "cpanm"
    assert entry["install"] == {"supported": True, "source": "cpanfile", "packages": ["Moo", "Kernelgate::No::Such"]}

    pl = await alice.connect(kernel_of(room, "perl"))
    assert (await pl.execute("use Moo;")).status == "error"
    pl.close()

    workspace = debian_gateway.data_dir / "rooms" / rid
    before = tree_digest(workspace)
    _, result = await install(alice, rid)
    assert result["status"] == "error", result
    assert "no Debian package provides: Kernelgate::No::Such (libkernelgate-no-such-perl," in result["message"]
    assert "Moo" not in result["message"].split("provides:")[1]
    assert tree_digest(workspace) == before

    await put_file(alice, rid, "cpanfile", "requires 'Moo', '2.0';\n")
    progress, result = await install(alice, rid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["perl"]
    lines = [e["line"] for e in progress]
    assert "Moo: Debian package libmoo-perl" in lines
    assert any(e["step"] == "swap" and "installed into .kernelgate/perl" in e["line"] for e in progress)
    fetched = (workspace / ".kernelgate/perl/debian-packages.txt").read_text().split()
    assert "libmoo-perl" in fetched and len(fetched) > 1  # its dependencies too

    pl = await alice.connect(kernel_of(room, "perl"))  # the same kernel, in a fresh sandbox
    run = await pl.execute("package Point { use Moo; has x => (is => 'ro'); }\n"
                           "opendir(my $d, '/sys/class/net'); my @n = sort grep { !/^\\./ } readdir $d;\n"
                           "print Point->new(x => 42)->x, ' ', $INC{'Moo.pm'}, ' ', join(',', @n), \"\\n\";")
    assert run.status == "ok", run.reply
    assert run.stdout.split() == ["42", "/workspace/.kernelgate/perl/lib/Moo.pm", "lo"]
    pl.close()


@pytest.fixture
def pip_gateway(docker_engine, start_gateway, tmp_path):
    config = tmp_path / "solo_config.py"
    config.write_text(CONFIG + registry_settings())
    return start_gateway("--kernels=docker", f"--config={config}", f"--jwt-secret={SECRET}")


async def install_into_kernel(client, kernel_id: str) -> tuple[list[dict], dict]:
    """POST a solo kernel's install; (progress events, result event)."""
    response = await client.request("POST", f"/api/kernels/{kernel_id}/environment/install", {}, timeout=400)
    assert response.status == 200, response.body
    assert response.headers["Content-Type"] == "application/x-ndjson"
    raw = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
    events = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    assert events[-1]["type"] == "result" and all(e["type"] == "progress" for e in events[:-1])
    return events[:-1], events[-1]


async def test_solo_kernel_installs_into_its_own_sandbox(pip_gateway):
    """A solo kernel's owner installs its requirements.txt into the kernel's home: the
    kernel process restarts in the same sandbox (its files stay) and imports the package
    with no network; nobody else can install, room kernels install through their room, and
    the packages go with the kernel."""
    gateway = pip_gateway
    alice, bob = gateway.client(token("alice")), gateway.client(token("bob"))
    kernel = await alice.start_kernel("python3")
    kid = kernel["id"]
    ws = await alice.connect(kid)
    run = await ws.execute("import os\nopen('requirements.txt', 'w').write('six==1.16.0\\n')\n"
                           "open('notes.txt', 'w').write('kept')\nprint(os.environ['PYTHONPATH'])")
    assert run.status == "ok" and run.stdout.strip() == "/home/kernel/.kernelgate/python", run.reply
    assert (await ws.execute("import six")).status == "error"
    ws.close()

    assert (await bob.request("POST", f"/api/kernels/{kid}/environment/install", {})).status == 404
    room = await make_room(alice, ["python3"])
    refused = await alice.request("POST", f"/api/kernels/{kernel_of(room, 'python3')}/environment/install", {})
    assert refused.status == 400 and "room" in refused.body["message"], refused.body

    progress, result = await install_into_kernel(alice, kid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["python3"] and result["languages"][0]["source"] == "requirements.txt"
    assert any(e["step"] == "swap" and e["line"] == "installed into .kernelgate/python" for e in progress)

    ws = await alice.connect(kid)
    run = await ws.execute("import os, six\nprint(six.__version__, six.__file__, sorted(os.listdir('/sys/class/net')),"
                           " open('notes.txt').read())")
    assert run.status == "ok", run.reply
    assert run.stdout.split() == ["1.16.0", "/home/kernel/.kernelgate/python/six.py", "['lo']", "kept"]
    ws.close()
    report = (await alice.request("GET", f"/api/kernels/{kid}/environment")).body
    assert report["last_install"]["status"] == "ok" and report["installing"] is False
    assert not list((gateway.data_dir / "installs").iterdir())  # staging and copied manifests removed

    assert (await alice.request("DELETE", f"/api/kernels/{kid}")).status == 204
    labels = {"label": f"org.kernelgate.kernel={kid}"}
    assert docker.from_env(timeout=60).containers.list(all=True, filters=labels) == []


async def test_description_installed_from_debian_and_used_by_the_r_kernel(debian_gateway):
    """A DESCRIPTION's Imports come from Debian's r-cran-* packages with their
    dependencies (what the image's R has is skipped, Suggests left out), and the room's
    R kernel loads them with no network."""
    alice = debian_gateway.client(token("alice"))
    room = await make_room(alice, ["r"])
    rid = room["id"]
    await put_file(alice, rid, "DESCRIPTION", "Package: demo\nVersion: 0.1\nDepends: R (>= 4.0)\n"
                                              "Imports:\n    tibble,\n    glue (>= 1.0)\nSuggests: testthat\n")
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    entry = next(e for e in report["languages"] if e["language"] == "r")
    assert entry["install"] == {"supported": True, "source": "DESCRIPTION", "packages": ["tibble", "glue"]}

    kernel = await alice.connect(kernel_of(room, "r"))
    assert (await kernel.execute("library(tibble)")).status == "error"
    kernel.close()

    progress, result = await install(alice, rid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["r"]
    lines = [e["line"] for e in progress]
    assert "tibble: Debian package r-cran-tibble" in lines and "glue: already in the image" in lines
    workspace = debian_gateway.data_dir / "rooms" / rid
    fetched = (workspace / ".kernelgate/r/debian-packages.txt").read_text().split()
    assert "r-cran-tibble" in fetched and "r-cran-testthat" not in fetched and len(fetched) > 1

    kernel = await alice.connect(kernel_of(room, "r"))
    run = await kernel.execute("library(tibble)\nt <- tibble(x = 1:3)\n"
                               "cat(nrow(t), find.package('tibble'), paste(list.files('/sys/class/net'), collapse=','), '\\n')")
    assert run.status == "ok", run.reply
    assert run.stdout.split() == ["3", "/workspace/.kernelgate/r/library/tibble", "lo"]
    kernel.close()


async def test_gemfile_installed_from_debian_and_used_by_the_ruby_kernel(debian_gateway):
    """A Gemfile's gems come from Debian's ruby-* packages with their dependencies, and
    the room's Ruby kernel requires them with no network."""
    alice = debian_gateway.client(token("alice"))
    room = await make_room(alice, ["ruby"])
    rid = room["id"]
    await put_file(alice, rid, "Gemfile", 'source "https://rubygems.invalid"\ngem "i18n", "~> 1.0"\n')
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    entry = next(e for e in report["languages"] if e["language"] == "ruby")
    assert entry["install"] == {"supported": True, "source": "Gemfile", "packages": ["i18n"]}

    kernel = await alice.connect(kernel_of(room, "ruby"))
    assert (await kernel.execute('require "i18n"')).status == "error"
    kernel.close()

    progress, result = await install(alice, rid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["ruby"]
    assert "i18n: Debian package ruby-i18n" in [e["line"] for e in progress]
    fetched = (debian_gateway.data_dir / "rooms" / rid / ".kernelgate/ruby/debian-packages.txt").read_text().split()
    assert "ruby-i18n" in fetched and "ruby-concurrent" in fetched  # and its dependency

    kernel = await alice.connect(kernel_of(room, "ruby"))
    run = await kernel.execute('require "i18n"\nI18n.available_locales = [:en]\n'
                               'I18n.backend.store_translations(:en, hello: "hi")\n'
                               'puts [I18n.t(:hello), $LOADED_FEATURES.grep(/i18n\\.rb$/).first,'
                               ' Dir.children("/sys/class/net").sort.join(",")].join(" ")')
    assert run.status == "ok", run.reply
    words = run.stdout.split()
    assert words[0] == "hi" and words[2] == "lo", run.stdout
    assert re.fullmatch(r"/workspace/\.kernelgate/ruby/gems/gems/i18n-[0-9.]+/lib/i18n\.rb", words[1]), words
    kernel.close()


async def test_vcpkg_json_installed_from_debian_and_used_by_the_c_kernel(debian_gateway):
    """A vcpkg.json's libraries come from Debian's -dev packages (uthash: Debian's
    uthash-dev, the second name tried), and the room's C kernel compiles against their
    headers with no network."""
    alice = debian_gateway.client(token("alice"))
    room = await make_room(alice, ["c"])
    rid = room["id"]
    await put_file(alice, rid, "vcpkg.json", '{"name": "demo", "dependencies": ["uthash", {"name": "cmake", "host": true}]}')
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    entry = next(e for e in report["languages"] if e["language"] == "c")
    assert entry["package_manager"] == "vcpkg"
    assert entry["install"] == {"supported": True, "source": "vcpkg.json", "packages": ["uthash"]}

    program = ('#include <stdio.h>\n#include <uthash.h>\n'
               'struct item { int id; UT_hash_handle hh; };\n'
               'int main(void) {\n  struct item *items = NULL, a = {.id = 1}, b = {.id = 2};\n'
               '  HASH_ADD_INT(items, id, (&a)); HASH_ADD_INT(items, id, (&b));\n'
               '  printf("%u\\n", HASH_COUNT(items));\n  return 0;\n}\n')
    kernel = await alice.connect(kernel_of(room, "c"))
    assert (await kernel.execute(program)).status == "error"
    kernel.close()

    progress, result = await install(alice, rid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["c"]
    assert "uthash: Debian package uthash-dev" in [e["line"] for e in progress]
    assert (debian_gateway.data_dir / "rooms" / rid / ".kernelgate/c/include/uthash.h").is_file()

    kernel = await alice.connect(kernel_of(room, "c"))
    run = await kernel.execute(program)
    assert run.status == "ok", run.reply
    assert run.stdout.split() == ["2"]
    kernel.close()


def test_debian_installers_refuse_names_and_settings_that_are_not_theirs():
    """Names reach the fetch script only as arguments, and only when they are names of
    their kind; mirrors and apt options that would not fit apt's files stop the gateway."""
    from types import SimpleNamespace

    from kernelgate.environment.installers import INSTALLERS, debian
    from kernelgate.environment.installers.base import Context, PlanError

    config = SimpleNamespace(debian_mirror="https://mirror.invalid/debian", debian_security_mirror="",
                             apt_options=[], ca_bundle="")
    for language, name in [("perl", "Foo;id"), ("r", "x$(id)"), ("ruby", "a b"), ("c", "../etc")]:
        with pytest.raises(PlanError):
            INSTALLERS[language].fetch({"packages": [name]}, Context(config, ""))
    fetch = INSTALLERS["perl"].fetch({"packages": ["Try::Tiny"]}, Context(config, ""))
    assert fetch.command[-1] == "Try::Tiny=libtry-tiny-perl,libtry-perl" and fetch.command[:2] == ["sh", "-c"]
    with pytest.raises(PlanError, match="debian_mirror"):
        INSTALLERS["r"].fetch({"packages": ["R6"]}, Context(SimpleNamespace(**{**vars(config), "debian_mirror": ""}), ""))
    for bad in [{"debian_mirror": 'https://x/";\nDir "/'}, {"debian_security_mirror": "ftp://x"},
                {"apt_options": ['Acquire::x=1"; Dir::Etc "/']}]:
        with pytest.raises(ValueError):
            debian.check_settings(SimpleNamespace(**{**vars(config), **bad}))
    debian.check_settings(config)


async def test_solo_perl_kernel_installs_from_debian_into_its_home(debian_gateway):
    """A solo kernel's cpanfile: the Debian packages are written into its home through
    its agent (nested folders), and its perl, restarted in the same sandbox, loads them."""
    alice = debian_gateway.client(token("alice"))
    kernel = await alice.start_kernel("perl")
    kid = kernel["id"]
    ws = await alice.connect(kid)
    run = await ws.execute("open(my $f, '>', 'cpanfile') or die; print $f \"requires 'Try::Tiny';\\n\"; close $f;"
                           " print $ENV{PERL5LIB}, \"\\n\";")
    assert run.status == "ok" and run.stdout.strip() == "/home/kernel/.kernelgate/perl/lib", run.reply
    ws.close()

    progress, result = await install_into_kernel(alice, kid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["perl"]
    assert "Try::Tiny: Debian package libtry-tiny-perl" in [e["line"] for e in progress]

    ws = await alice.connect(kid)
    run = await ws.execute("use Try::Tiny; my $r = try { die 'x' } catch { 'caught' };"
                           " print $r, ' ', $INC{'Try/Tiny.pm'}, \"\\n\";")
    assert run.status == "ok", run.reply
    assert run.stdout.split() == ["caught", "/home/kernel/.kernelgate/perl/lib/Try/Tiny.pm"]
    ws.close()
    assert (await alice.request("DELETE", f"/api/kernels/{kid}")).status == 204


async def test_rockspec_installed_from_debian_and_used_by_the_lua_kernel(debian_gateway):
    """A rockspec's dependencies come from Debian's lua-* packages, and the room's Lua
    kernel requires them with no network."""
    alice = debian_gateway.client(token("alice"))
    room = await make_room(alice, ["lua"])
    rid = room["id"]
    await put_file(alice, rid, "demo-0.1-1.rockspec", 'package = "demo"\nversion = "0.1-1"\n'
                                                      'dependencies = {\n  "lua >= 5.1",\n  "inspect >= 3.0",\n}\n'
                                                      'test_dependencies = { "busted" }\n')
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    entry = next(e for e in report["languages"] if e["language"] == "lua")
    assert entry["package_manager"] == "luarocks"
    assert entry["install"] == {"supported": True, "source": "demo-0.1-1.rockspec", "packages": ["inspect"]}

    progress, result = await install(alice, rid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["lua"]
    assert "inspect: Debian package lua-inspect" in [e["line"] for e in progress]

    kernel = await alice.connect(kernel_of(room, "lua"))
    run = await kernel.execute('local inspect = require("inspect")\n'
                               'print(inspect({1, 2}) == "{ 1, 2 }", package.searchpath("inspect", package.path))')
    assert run.status == "ok", run.reply
    assert run.stdout.split() == ["true", "/workspace/.kernelgate/lua/share/inspect.lua"]
    kernel.close()
