"""Installers beyond pip and Deno, on real containers and a real Debian mirror: the
package is fetched through the install fence, put into the room's workspace, and used by
the room's kernel with no network.

The Debian mirror is this machine's own apt source (no mirror is named here), as https
(the fence's proxy tunnels CONNECT only), with this machine's apt settings for it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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


@pytest.mark.parametrize("kernel, manifest, text, packages, missing", [
    ("perl", "cpanfile", "requires 'Moo', '2.0';\nrequires 'Kernelgate::No::Such';\n"
                         "on 'test' => sub {\n  requires 'Test::Deep';\n};\n",
     ["Moo", "Kernelgate::No::Such"], "Kernelgate::No::Such (libkernelgate-no-such-perl,libkernelgate-no-perl,"),
    ("go", "go.mod", "module x\n\ngo 1.21\n\nrequire (\n\tgithub.com/google/uuid v1.3.0\n"
                     "\texample.org/kernelgate/nosuch v1.0.0\n)\n",
     ["github.com/google/uuid", "example.org/kernelgate/nosuch"],
     "example.org/kernelgate/nosuch (golang-example-kernelgate-nosuch-dev)"),
    ("php", "composer.json", json.dumps({"require": {"ext-bcmath": "*", "kernelgate/no-such": "^1"}}),
     ["ext-bcmath", "kernelgate/no-such"], "kernelgate/no-such (php-kernelgate-no-such)"),
    ("java", "pom.xml", "<project><dependencies><dependency><groupId>org.apache.commons</groupId>"
                        "<artifactId>commons-lang3</artifactId></dependency><dependency>"
                        "<groupId>org.kernelgate</groupId><artifactId>no-such</artifactId></dependency>"
                        "</dependencies></project>",
     ["org.apache.commons:commons-lang3", "org.kernelgate:no-such"],
     "org.kernelgate:no-such (libno-such-java,libkernelgate-no-such-java)"),
])
async def test_a_name_no_debian_package_provides_fails_the_install_by_name(debian_gateway, kernel, manifest, text,
                                                                           packages, missing):
    """A manifest naming what Debian lacks: the install fails naming it (and only it) with
    the packages tried, and the workspace is unchanged."""
    alice = debian_gateway.client(token("alice"))
    room = await make_room(alice, [kernel])
    rid = room["id"]
    await put_file(alice, rid, manifest, text)
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    entry = next(e for e in report["languages"] if e["install"]["source"] == manifest)
    assert entry["install"] == {"supported": True, "source": manifest, "packages": packages}

    workspace = debian_gateway.data_dir / "rooms" / rid
    before = tree_digest(workspace)
    _, result = await install(alice, rid)
    assert result["status"] == "error", result
    assert f"no Debian package provides: {missing}" in result["message"], result["message"]
    assert packages[0] not in result["message"].split("provides:")[1]
    assert tree_digest(workspace) == before


@dataclass(frozen=True)
class Case:
    """One installer's install-then-use: the room's kernel runs `code`, which fails before
    the install and prints `expected` (a regular expression of its words) after it, with
    no network."""

    kernel: str  # the room's kernelspec
    language: str  # detection's language (its installer)
    manifest: str
    text: str
    manager: str  # the reported package manager
    packages: list[str]  # what the plan installs (dev and test dependencies left out)
    lines: list[str]  # progress lines of the install
    fetched: list[str]  # Debian packages among those fetched
    code: str
    expected: str
    not_fetched: list[str] = field(default_factory=list)
    dependencies: bool = False  # more was fetched than `fetched`: dependencies the image lacks


INSTALLS = [
    pytest.param(Case(
        "perl", "perl", "cpanfile", "requires 'Moo', '2.0';\non 'test' => sub {\n  requires 'Test::Deep';\n};\n",
        "cpanm", ["Moo"], ["Moo: Debian package libmoo-perl"], ["libmoo-perl"],
        "package Point { use Moo; has x => (is => 'ro'); }\n"
        "opendir(my $d, '/sys/class/net'); my @n = sort grep { !/^\\./ } readdir $d;\n"
        "print Point->new(x => 42)->x, ' ', $INC{'Moo.pm'}, ' ', join(',', @n), \"\\n\";",
        r"42 /workspace/\.kernelgate/perl/lib/Moo\.pm lo", dependencies=True), id="perl-moo"),
    pytest.param(Case(  # glue is in the image, Suggests are left out; R is in the high tier
        "r", "r", "DESCRIPTION", "Package: demo\nVersion: 0.1\nDepends: R (>= 4.0)\n"
                                 "Imports:\n    tibble,\n    glue (>= 1.0)\nSuggests: testthat\n",
        "R", ["tibble", "glue"], ["tibble: Debian package r-cran-tibble", "glue: already in the image"],
        ["r-cran-tibble"],
        "library(tibble)\nt <- tibble(x = 1:3)\n"
        "cat(nrow(t), find.package('tibble'), paste(list.files('/sys/class/net'), collapse=','), '\\n')",
        r"3 /workspace/\.kernelgate/r/library/tibble lo", ["r-cran-testthat"], True), id="r-tibble"),
    pytest.param(Case(  # GEM_PATH activates the gem and its dependency ruby-concurrent
        "ruby", "ruby", "Gemfile", 'source "https://rubygems.invalid"\ngem "i18n", "~> 1.0"\n',
        "bundler", ["i18n"], ["i18n: Debian package ruby-i18n"], ["ruby-i18n", "ruby-concurrent"],
        'require "i18n"\nI18n.available_locales = [:en]\n'
        'I18n.backend.store_translations(:en, hello: "hi")\n'
        'puts [I18n.t(:hello), $LOADED_FEATURES.grep(/i18n\\.rb$/).first,'
        ' Dir.children("/sys/class/net").sort.join(",")].join(" ")',
        r"hi /workspace/\.kernelgate/ruby/gems/gems/i18n-[0-9.]+/lib/i18n\.rb lo"), id="ruby-i18n"),
    pytest.param(Case(  # Debian's uthash-dev is the second name tried; host dependencies left out
        "c", "c", "vcpkg.json", '{"name": "demo", "dependencies": ["uthash", {"name": "cmake", "host": true}]}',
        "vcpkg", ["uthash"], ["uthash: Debian package uthash-dev"], ["uthash-dev"],
        '#include <stdio.h>\n#include <uthash.h>\n'
        'struct item { int id; UT_hash_handle hh; };\n'
        'int main(void) {\n  struct item *items = NULL, a = {.id = 1}, b = {.id = 2};\n'
        '  HASH_ADD_INT(items, id, (&a)); HASH_ADD_INT(items, id, (&b));\n'
        '  printf("%u\\n", HASH_COUNT(items));\n  return 0;\n}\n',
        "2"), id="c-uthash"),
    pytest.param(Case(
        "lua", "lua", "demo-0.1-1.rockspec", 'package = "demo"\nversion = "0.1-1"\n'
                                             'dependencies = {\n  "lua >= 5.1",\n  "inspect >= 3.0",\n}\n'
                                             'test_dependencies = { "busted" }\n',
        "luarocks", ["inspect"], ["inspect: Debian package lua-inspect"], ["lua-inspect"],
        'local inspect = require("inspect")\n'
        'print(inspect({1, 2}) == "{ 1, 2 }", package.searchpath("inspect", package.path))',
        r"true /workspace/\.kernelgate/lua/share/inspect\.lua"), id="lua-inspect"),
    pytest.param(Case(  # GOPATH mode on Debian's GOPATH tree; the indirect requirement left out
        "go", "go", "go.mod", "module example.com/demo\n\ngo 1.21\n\nrequire (\n"
                              "\tgithub.com/google/uuid v1.3.0\n\tgolang.org/x/sys v0.1.0 // indirect\n)\n",
        "go", ["github.com/google/uuid"], ["github.com/google/uuid: Debian package golang-github-google-uuid-dev"],
        ["golang-github-google-uuid-dev"],
        'import "fmt"\nimport "os"\nimport "github.com/google/uuid"\n'
        'u := uuid.MustParse("f47ac10b-58cc-4372-a567-0e02b2c3d479")\n'
        'entries, _ := os.ReadDir("/sys/class/net")\n'
        'fmt.Println(u.Version(), u.String()[:8], os.Getenv("GOPATH"), len(entries), entries[0].Name())',
        r"VERSION_4 f47ac10b /workspace/\.kernelgate/go 1 lo"), id="go-uuid"),
    pytest.param(Case(  # an extension (its ini written for it) and a library (on include_path)
        "php", "php", "composer.json",
        json.dumps({"require": {"php": ">=8.1", "ext-bcmath": "*", "psr/log": "^1.1"},
                    "require-dev": {"phpunit/phpunit": "^9"}}),
        "composer", ["ext-bcmath", "psr/log"],
        ["ext-bcmath: Debian package php-bcmath", "psr/log: Debian package php-psr-log", "bcmath: enabled"],
        ["php-bcmath", "php-psr-log"],
        "require_once 'Psr/Log/autoload.php';\n"
        "class EchoLogger extends Psr\\Log\\AbstractLogger {\n"
        "  public function log($level, $message, array $context = array()) { echo \"$level:$message \"; }\n}\n"
        "(new EchoLogger())->info('hi');\n"
        "echo bcadd('1.5', '2.25', 2), ' ', stream_resolve_include_path('Psr/Log/LoggerInterface.php'), ' ',"
        " implode(',', array_diff(scandir('/sys/class/net'), array('.', '..'))), \"\\n\";",
        r"info:hi 3\.75 /workspace/\.kernelgate/php/lib/Psr/Log/LoggerInterface\.php lo"), id="php-bcmath-psr-log"),
    pytest.param(Case(  # jjava's JJAVA_CLASSPATH; test scope left out
        "java", "java", "pom.xml",
        "<project><modelVersion>4.0.0</modelVersion><groupId>x</groupId><artifactId>demo</artifactId>"
        "<version>1</version><dependencies>"
        "<dependency><groupId>org.apache.commons</groupId><artifactId>commons-lang3</artifactId>"
        "<version>3.12.0</version></dependency>"
        "<dependency><groupId>junit</groupId><artifactId>junit</artifactId><version>4.13</version>"
        "<scope>test</scope></dependency></dependencies></project>",
        "maven", ["org.apache.commons:commons-lang3"],
        ["org.apache.commons:commons-lang3: Debian package libcommons-lang3-java"], ["libcommons-lang3-java"],
        "import org.apache.commons.lang3.StringUtils;\n"
        "System.out.println(StringUtils.capitalize(\"kernelgate\") + \" \""
        " + StringUtils.class.getProtectionDomain().getCodeSource().getLocation().getPath());",
        r"Kernelgate /workspace/\.kernelgate/java/lib/commons-lang3[0-9.-]*\.jar", ["junit4"]), id="java-commons-lang3"),
    pytest.param(Case(  # Kotlin: @file:DependsOn of the installed jar (a local file)
        "kotlin", "java", "build.gradle.kts",
        'plugins {\n    kotlin("jvm") version "1.9.0"\n}\n'
        'dependencies {\n    implementation("org.apache.commons:commons-lang3:3.12.0")\n'
        '    testImplementation("junit:junit:4.13")\n}\n',
        "gradle", ["org.apache.commons:commons-lang3"],
        ["org.apache.commons:commons-lang3: Debian package libcommons-lang3-java"], ["libcommons-lang3-java"],
        '@file:DependsOn("/workspace/.kernelgate/java/lib/commons-lang3.jar")\n'
        "import org.apache.commons.lang3.StringUtils\n"
        'println(StringUtils.capitalize("kernelgate") + " " + System.getenv("KERNELGATE_JAVA_LIB"))',
        r"Kernelgate /workspace/\.kernelgate/java/lib"), id="kotlin-commons-lang3"),
]


@pytest.mark.parametrize("case", INSTALLS)
async def test_manifest_installed_from_debian_and_used_by_the_kernel(debian_gateway, case):
    """A manifest's packages come from Debian's packages of its ecosystem (with the
    dependencies the image lacks), go into the room's workspace, and the room's kernel,
    restarted, uses them with no network."""
    alice = debian_gateway.client(token("alice"))
    room = await make_room(alice, [case.kernel])
    rid = room["id"]
    await put_file(alice, rid, case.manifest, case.text)
    report = (await alice.request("GET", f"/api/rooms/{rid}/environment")).body
    entry = next(e for e in report["languages"] if e["language"] == case.language)
    assert entry["package_manager"] == case.manager
    assert entry["install"] == {"supported": True, "source": case.manifest, "packages": case.packages}

    kernel = await alice.connect(kernel_of(room, case.kernel))
    assert (await kernel.execute(case.code)).status == "error"
    kernel.close()

    progress, result = await install(alice, rid)
    assert result["status"] == "ok", result
    assert result["restarted"] == [case.kernel]
    lines = [e["line"] for e in progress]
    assert set(case.lines) <= set(lines), lines
    assert any(e["step"] == "swap" and f"installed into .kernelgate/{case.language}" in e["line"] for e in progress)
    workspace = debian_gateway.data_dir / "rooms" / rid
    fetched = (workspace / f".kernelgate/{case.language}/debian-packages.txt").read_text().split()
    assert set(case.fetched) <= set(fetched) and not set(case.not_fetched) & set(fetched), fetched
    assert len(fetched) > len(case.fetched) if case.dependencies else True

    kernel = await alice.connect(kernel_of(room, case.kernel))  # the same kernel, in a fresh sandbox
    run = await kernel.execute(case.code)
    assert run.status == "ok", run.reply
    assert re.fullmatch(case.expected, " ".join(run.stdout.split())), run.stdout
    kernel.close()


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
                           "open('notes.txt', 'w').write('kept')\n"
                           "print(os.environ['PYTHONPATH'], sorted({'LD_LIBRARY_PATH', 'GEM_PATH', 'PERL5LIB', 'GOPATH'}"
                           " & set(os.environ)))")
    # only its own installer's variables: none of the C, Ruby, Perl or Go installers'
    assert run.status == "ok" and run.stdout.split() == ["/home/kernel/.kernelgate/python", "[]"], run.reply
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


def test_debian_installers_refuse_names_and_settings_that_are_not_theirs():
    """Names reach the fetch script only as arguments, and only when they are names of
    their kind; mirrors and apt options that would not fit apt's files stop the gateway."""
    from types import SimpleNamespace

    from kernelgate.environment.installers import INSTALLERS, debian
    from kernelgate.environment.installers.base import Context, PlanError

    config = SimpleNamespace(debian_mirror="https://mirror.invalid/debian", debian_security_mirror="",
                             apt_options=[], ca_bundle="")
    for language, name in [("perl", "Foo;id"), ("r", "x$(id)"), ("ruby", "a b"), ("c", "../etc"),
                           ("go", "github.com/x/y;id"), ("go", "localmodule"), ("php", "ext-$(id)"),
                           ("php", "vendor/../x y"), ("java", "org.x:y`id`"), ("java", "no-colon")]:
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


async def test_solo_php_kernel_installs_an_extension_into_its_home(debian_gateway):
    """A solo PHP kernel's composer.json: the extension is written into its home, and its
    ini (whose path PHP expands from KERNELGATE_PHP, the home's here) loads it in the
    restarted kernel."""
    alice = debian_gateway.client(token("alice"))
    kernel = await alice.start_kernel("php")
    kid = kernel["id"]
    ws = await alice.connect(kid)
    run = await ws.execute("file_put_contents('composer.json', json_encode(['require' => ['ext-bcmath' => '*']]));\n"
                           "echo getenv('PHP_INI_SCAN_DIR'), ' ', getenv('KERNELGATE_PHP'), \"\\n\";")
    assert run.status == "ok", run.reply
    assert run.stdout.split() == [":/home/kernel/.kernelgate/php/conf.d", "/home/kernel/.kernelgate/php"]
    assert (await ws.execute("echo bcadd('1.5', '2.25', 2);")).status == "error"
    ws.close()

    progress, result = await install_into_kernel(alice, kid)
    assert result["status"] == "ok", result
    assert result["restarted"] == ["php"]
    lines = [e["line"] for e in progress]
    assert "ext-bcmath: Debian package php-bcmath" in lines and "bcmath: enabled" in lines

    ws = await alice.connect(kid)
    run = await ws.execute("echo bcadd('1.5', '2.25', 2), ' ', str_replace(\",\\n\", ' ', php_ini_scanned_files()), \"\\n\";")
    assert run.status == "ok", run.reply
    words = run.stdout.split()
    assert words[0] == "3.75" and "/home/kernel/.kernelgate/php/conf.d/20-bcmath.ini" in words, words
    ws.close()
    assert (await alice.request("DELETE", f"/api/kernels/{kid}")).status == 204
