"""Detection on fixture trees (no containers): manifests, frameworks, the project file,
limits, and links that must not be followed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kernelgate.environment import manifests, project
from kernelgate.environment.detect import Limits, analyze, scan
from kernelgate.environment.tree import HostTree


def write(root: Path, files: dict[str, str]) -> Path:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root


async def detect(root: Path, limits: Limits = Limits()) -> dict:
    return analyze(await scan(HostTree(root), limits))


def language(report: dict, name: str) -> dict:
    return next(entry for entry in report["languages"] if entry["language"] == name)


async def test_a_polyglot_project(tmp_path):
    write(tmp_path, {
        "requirements.txt": "Django>=5.0\nnumpy==2.1.0  # data\n-r dev.txt\n",
        "manage.py": "import django\nfrom pandas import DataFrame\nimport os, sys\n",
        "notebooks/explore.ipynb": json.dumps({"cells": [
            {"cell_type": "code", "source": ["import matplotlib.pyplot as plt\n"]},
            {"cell_type": "markdown", "source": "import nothing"}]}),
        "web/package.json": json.dumps({"dependencies": {"react": "^18", "next": "14.2.0"},
                                         "devDependencies": {"vitest": "^1"}}),
        "web/pnpm-lock.yaml": "",
        "web/app/page.tsx": "import Link from 'next/link'\nimport x from './local'\n",
        "server/pom.xml": (
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><parent><groupId>org.springframework.boot'
            '</groupId><artifactId>spring-boot-starter-parent</artifactId><version>3.3.0</version></parent>'
            '<dependencies><dependency><groupId>org.springframework.boot</groupId>'
            '<artifactId>spring-boot-starter-web</artifactId></dependency></dependencies></project>'),
        "ruby/Gemfile": "source 'https://rubygems.org'\ngem 'rails', '~> 7.1'\n",
        "php/composer.json": json.dumps({"require": {"php": ">=8.1", "laravel/framework": "^11.0"}}),
        "r/DESCRIPTION": "Package: app\nImports: shiny (>= 1.8),\n    dplyr\nDepends: R (>= 4.1)\n",
        "conda/environment.yml": "name: x\ndependencies:\n  - python=3.11\n  - pandas>=2\n  - pip:\n    - streamlit\n",
        "node_modules/left-pad/package.json": json.dumps({"dependencies": {"express": "4"}}),
        ".venv/lib/requirements.txt": "flask\n",
    })
    report = await detect(tmp_path)
    assert [entry["language"] for entry in report["languages"]] == ["java", "javascript", "php", "python", "r", "ruby"]
    python = language(report, "python")
    assert python["package_manager"] == "pip"
    assert [m["path"] for m in python["manifests"]] == ["requirements.txt", "conda/environment.yml"]
    assert python["manifests"][1]["package_manager"] == "conda"
    names = {f["name"] for f in python["frameworks"]}
    assert {"Django", "NumPy (data)", "pandas (data)", "Matplotlib (data)", "Streamlit"} <= names
    assert "Flask" not in names  # .venv is never entered
    assert python["imports"] == ["django", "matplotlib", "pandas"]
    assert python["install"] == {"supported": True, "source": "requirements.txt", "packages": [],
                                 "requirements": "requirements.txt"}
    js = language(report, "javascript")
    assert js["package_manager"] == "pnpm" and js["lockfiles"] == ["web/pnpm-lock.yaml"]
    assert {f["name"] for f in js["frameworks"]} == {"React", "Next.js", "Vitest (tests)"}
    assert "express" not in {p["name"] for p in js["packages"]}  # node_modules is never entered
    assert js["install"]["source"] is None  # package.json is not in the project's folder
    assert {f["name"] for f in language(report, "java")["frameworks"]} == {"Spring Boot"}
    assert language(report, "java")["install"] == {"supported": True, "source": None, "packages": []}  # in server/
    assert [f["name"] for f in language(report, "ruby")["frameworks"]] == ["Rails"]
    assert [p["name"] for p in language(report, "php")["packages"]] == ["laravel/framework"]
    assert [(p["name"], p["spec"]) for p in language(report, "r")["packages"]] == [("shiny", ">= 1.8"), ("dplyr", "")]
    assert report["scan"]["truncated"] is False and report["scan"]["errors"] == []


async def test_links_are_listed_never_followed(tmp_path):
    outside = write(tmp_path / "outside", {
        "requirements.txt": "django\n", "package.json": json.dumps({"dependencies": {"express": "4"}}),
        "deep/go.mod": "module x\nrequire github.com/gin-gonic/gin v1.9.1\n"})
    root = write(tmp_path / "ws", {"src/app.py": "print(1)\n"})
    os.symlink(outside / "requirements.txt", root / "requirements.txt")
    os.symlink(outside, root / "linked")
    os.symlink(outside / "package.json", root / "src" / "package.json")
    os.symlink("/etc/passwd", root / "kernelgate.toml")
    report = await detect(root)
    assert report["languages"] == []
    assert report["project_file"] is None
    assert sorted(report["scan"]["links_not_followed"]) == [
        "kernelgate.toml", "linked", "requirements.txt", "src/package.json"]
    # the workspace root itself being a link is refused too
    os.symlink(outside, tmp_path / "root-link")
    refused = await detect(tmp_path / "root-link")
    assert refused["languages"] == [] and refused["scan"]["errors"][0]["path"] == "."


async def test_limits_bound_the_walk(tmp_path):
    files = {f"pkg{i}/requirements.txt": f"package-{i}\n" for i in range(30)}
    files.update({"a/b/c/d/e/f/package.json": json.dumps({"dependencies": {"react": "18"}}),
                  "big/requirements.txt": "x" * 5000})
    write(tmp_path, files)
    report = await detect(tmp_path, Limits(max_entries=20, max_manifest_bytes=4096))
    assert report["scan"]["truncated"] is True and report["scan"]["entries"] <= 21
    report = await detect(tmp_path, Limits(max_depth=3, max_manifest_bytes=4096))
    assert "javascript" not in [entry["language"] for entry in report["languages"]]
    assert report["scan"]["truncated"] is True
    assert any(e["path"] == "big/requirements.txt" for e in report["scan"]["errors"])


async def test_project_file_overrides(tmp_path):
    write(tmp_path, {
        "kernelgate.toml": 'workdir = "service"\n[env]\nAPP_MODE = "dev"\n'
                           '[packages]\npython = ["six==1.16.0", "attrs"]\n',
        "requirements.txt": "flask\n",
        "service/package.json": json.dumps({"dependencies": {"express": "4"}}),
    })
    report = await detect(tmp_path)
    assert report["project_file"] == {"path": "kernelgate.toml", "workdir": "service",
                                      "env": {"APP_MODE": "dev"},
                                      "packages": {"python": ["six==1.16.0", "attrs"]}}
    assert language(report, "python")["install"] == {"supported": True, "source": "kernelgate.toml",
                                                     "packages": ["six==1.16.0", "attrs"]}
    assert language(report, "javascript")["install"]["source"] == "service/package.json"
    assert project.kernel_prefix(tmp_path, "python") == ["/usr/bin/env", "-C", "/workspace/service",
                                                         "PYTHONPATH=/workspace/.kernelgate/python", "APP_MODE=dev"]
    assert project.kernel_prefix(tmp_path, "c++") == ["/usr/bin/env", "-C", "/workspace/service",
                                                      "CPATH=/workspace/.kernelgate/c/include",
                                                      "LIBRARY_PATH=/workspace/.kernelgate/c/lib",
                                                      "LD_LIBRARY_PATH=/workspace/.kernelgate/c/lib", "APP_MODE=dev"]
    assert project.kernel_prefix(tmp_path, "sql") == ["/usr/bin/env", "-C", "/workspace/service", "APP_MODE=dev"]


def test_a_kernel_gets_only_its_own_languages_installer_variables():
    """A python kernel gets PYTHONPATH and none of the other installers' variables
    (LD_LIBRARY_PATH, GEM_PATH...); Kotlin uses Java's installs, C++ C's, TypeScript
    JavaScript's; the project file may set none of any installer's variables."""
    from kernelgate.environment import installers

    assert installers.kernel_env("python") == {"PYTHONPATH": "/workspace/.kernelgate/python"}
    assert project.solo_prefix("python") == ["/usr/bin/env", "PYTHONPATH=/home/kernel/.kernelgate/python"]
    assert installers.kernel_env("R", "/home/kernel") == {"R_LIBS": "/home/kernel/.kernelgate/r/library"}
    assert installers.kernel_env("kotlin") == installers.kernel_env("java") != {}
    assert installers.kernel_env("c++") == installers.kernel_env("c")
    assert installers.kernel_env("bash") == {}
    every = installers.variable_names()
    assert {"LD_LIBRARY_PATH", "GEM_PATH", "PERL5LIB", "PYTHONPATH", "GOPATH", "JJAVA_CLASSPATH",
            "PHP_INI_SCAN_DIR"} <= every
    for name in sorted(every - {"LD_LIBRARY_PATH"}):  # LD_ is refused as a prefix anyway
        with pytest.raises(project.ProjectFileError, match=name):
            project.parse(f'[env]\n{name} = "x"'.encode())



@pytest.mark.parametrize("files, language_name, manager, source, packages", [
    ({"go.mod": "module x\n\ngo 1.21\n\nrequire (\n\tgithub.com/google/uuid v1.3.0\n"
                "\tgolang.org/x/sys v0.1.0 // indirect\n)\nrequire github.com/gin-gonic/gin v1.9.1\n"},
     "go", "go", "go.mod", ["github.com/google/uuid", "github.com/gin-gonic/gin"]),
    ({"composer.json": json.dumps({"require": {"php": ">=8.1", "ext-bcmath": "*", "lib-curl": "*",
                                               "composer-plugin-api": "^2", "psr/log": "^1"},
                                   "require-dev": {"phpunit/phpunit": "^9"}})},
     "php", "composer", "composer.json", ["ext-bcmath", "psr/log"]),
    ({"pom.xml": "<project><parent><groupId>org.springframework.boot</groupId>"
                 "<artifactId>spring-boot-starter-parent</artifactId></parent><dependencies>"
                 "<dependency><groupId>org.apache.commons</groupId><artifactId>commons-lang3</artifactId></dependency>"
                 "<dependency><groupId>junit</groupId><artifactId>junit</artifactId><scope>test</scope></dependency>"
                 "</dependencies></project>"},
     "java", "maven", "pom.xml", ["org.apache.commons:commons-lang3"]),
    ({"build.gradle.kts": 'plugins {\n    id("org.springframework.boot") version "3.3.0"\n}\n'
                          'dependencies {\n    implementation("com.google.guava:guava:33.0.0-jre")\n'
                          '    testImplementation("junit:junit:4.13")\n}\n'},
     "java", "gradle", "build.gradle.kts", ["com.google.guava:guava"]),
])
async def test_go_php_and_java_installs_are_planned_from_their_manifests(tmp_path, files, language_name, manager,
                                                                         source, packages):
    """Indirect Go requirements, PHP platform requirements (php, lib-*, composer-*), dev and
    test dependencies, Gradle plugins and Maven parents are not installed; PHP extensions
    are."""
    write(tmp_path, files)
    entry = language(await detect(tmp_path), language_name)
    assert entry["package_manager"] == manager
    assert entry["install"] == {"supported": True, "source": source, "packages": packages}


def test_go_php_and_java_names_map_to_debian_packages():
    from kernelgate.environment.installers import go, java, php

    assert go.candidates("github.com/google/uuid") == ["golang-github-google-uuid-dev"]
    assert go.candidates("golang.org/x/text") == ["golang-golang-x-text-dev"]
    assert go.candidates("github.com/go-chi/chi/v5") == ["golang-github-go-chi-chi-v5-dev", "golang-github-go-chi-chi-dev"]
    assert go.candidates("gopkg.in/yaml.v3") == ["golang-gopkg-yaml.v3-dev"]
    assert php.candidates("ext-bcmath") == ["php-bcmath"] and php.candidates("ext-pdo_sqlite") == ["php-sqlite3"]
    assert php.candidates("ext-zip") == ["php-zip"] and php.candidates("ext-igbinary") == ["php-igbinary"]
    assert php.candidates("psr/log") == ["php-psr-log"] and php.candidates("monolog/monolog") == ["php-monolog"]
    assert java.candidates("org.apache.commons:commons-lang3") == ["libcommons-lang3-java"]
    assert java.candidates("org.jsoup:jsoup") == ["libjsoup-java"]
    assert java.candidates("com.google.code.gson:gson") == ["libgoogle-gson-java"]
    assert java.candidates("io.netty:netty-all") == ["libnetty-all-java"]
    assert java.candidates("com.h2database:h2") == ["libh2-java", "libh2database-h2-java"]

@pytest.mark.parametrize("text, word", [
    ('workdir = "../up"', "'..'"),
    ('workdir = "/etc"', "relative path"),
    ('workdir = "a b"', "relative path"),
    ('[env]\nLD_PRELOAD = "x"', "LD_PRELOAD"),
    ('[env]\nKERNEL_USERNAME = "root"', "KERNEL_USERNAME"),
    ('[env]\nPERL5LIB = "/x"', "PERL5LIB"),
    ('[env]\n"1BAD" = "x"', "variable name"),
    ('[env]\nN = 1', "string"),
    ('[packages]\ncobol = ["x"]', "installs support c, go, java, javascript, lua, perl, php, python, r, ruby"),
    ('[packages]\npython = ["--index-url=http://x"]', "not a package"),
    ('colour = "red"', "unknown keys"),
    ('workdir = ', "TOML"),
])
def test_project_file_errors(text, word):
    with pytest.raises(project.ProjectFileError) as error:
        project.parse(text.encode())
    assert word in str(error.value)


async def test_an_invalid_project_file_is_reported_and_ignored_by_kernels(tmp_path):
    write(tmp_path, {"kernelgate.toml": '[env]\nPATH = "/nowhere"\n', "requirements.txt": "six\n"})
    report = await detect(tmp_path)
    assert "PATH" in report["project_file_error"] and report["project_file"] is None
    assert project.kernel_prefix(tmp_path, "perl") == ["/usr/bin/env", "PERL5LIB=/workspace/.kernelgate/perl/lib"]


def test_manifest_parsers():
    assert manifests.requirements_txt(b"a==1\n-e ./lib\n./wheel.whl\nB[x]>=2 ; python_version>'3'\n") == [
        manifests.Package("a", "==1"), manifests.Package("./lib"), manifests.Package("./wheel.whl"),
        manifests.Package("b", ">=2")]
    poetry = b'[tool.poetry.dependencies]\npython = "^3.11"\nfastapi = "^0.110"\n[tool.poetry.group.dev.dependencies]\npytest = "*"\n'
    assert manifests.pyproject_toml(poetry) == [manifests.Package("fastapi", "^0.110"),
                                                manifests.Package("pytest", "", dev=True)]
    assert manifests.pyproject_manager(poetry) == "poetry"
    assert manifests.pipfile(b'[packages]\nflask = "*"\n[dev-packages]\npytest = ">=8"\n') == [
        manifests.Package("flask"), manifests.Package("pytest", ">=8", dev=True)]
    assert manifests.build_gradle(b'dependencies {\n implementation("org.springframework.boot:spring-boot-starter-web:3.3.0")\n}') == [
        manifests.Package("org.springframework.boot:spring-boot-starter-web", "3.3.0")]
    with pytest.raises(manifests.ManifestError):
        manifests.pom_xml(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><project>&a;</project>')
    with pytest.raises(manifests.ManifestError):
        manifests.package_json(b"[1, 2]")
