"""Java (and Kotlin): the dependencies of a pom.xml or build.gradle(.kts), from Debian's
lib*-java packages (debian.py's fetch). Their jars (/usr/share/java, links copied as
files) go to /workspace/.kernelgate/java/lib.

- The Java kernel (jjava) adds JJAVA_CLASSPATH's entries to its class path (globs
  resolved at its start): `import org.apache.commons.lang3.StringUtils;` works with no
  network.
- The Kotlin kernel has no class-path variable: a cell loads a jar with
  `@file:DependsOn("/workspace/.kernelgate/java/lib/<name>.jar")` (a local file needs no
  network); KERNELGATE_JAVA_LIB names the folder.

Versions are Debian's. Test-scoped dependencies, Gradle plugins and parent POMs
(`*-parent`, which have no jar) are left out.
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment.installers import debian

#: Where the jars go, relative to the workspace.
JAVA_TARGET = ".kernelgate/java"
#: groupId:artifactId -> Debian package, where Debian's is not lib<artifactId>-java.
DEBIAN_NAMES = {
    "com.google.code.gson:gson": "libgoogle-gson-java", "junit:junit": "junit4",
    "org.junit.jupiter:junit-jupiter": "junit5", "org.junit.jupiter:junit-jupiter-api": "junit5",
    "org.slf4j:slf4j-api": "libslf4j-java", "org.slf4j:slf4j-simple": "libslf4j-java",
    "com.fasterxml.jackson.core:jackson-databind": "libjackson2-databind-java",
    "com.fasterxml.jackson.core:jackson-core": "libjackson2-core-java",
    "com.fasterxml.jackson.core:jackson-annotations": "libjackson2-annotations-java",
    "org.apache.httpcomponents:httpclient": "libhttpclient-java", "org.yaml:snakeyaml": "libyaml-snake-java",
    "org.jetbrains.kotlinx:kotlinx-coroutines-core": "libkotlinx-coroutines-java",
    "com.google.guava:guava": "libguava-java", "org.postgresql:postgresql": "libpostgresql-jdbc-java",
    "org.xerial:sqlite-jdbc": "libxerial-sqlite-jdbc-java", "log4j:log4j": "liblog4j1.2-java",
    "org.apache.logging.log4j:log4j-core": "liblog4j2-java", "org.apache.logging.log4j:log4j-api": "liblog4j2-java",
}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_MANIFESTS = ("pom.xml", "build.gradle", "build.gradle.kts")


def candidates(name: str) -> list[str]:
    """Debian packages that may provide groupId:artifactId: the explicit name, else
    lib<artifactId>-java, then lib<last part of groupId>-<artifactId>-java."""
    if name in DEBIAN_NAMES:
        return [DEBIAN_NAMES[name]]
    group, artifact = name.lower().replace("_", "-").split(":", 1)
    artifact = artifact.removeprefix("lib")
    names = [f"lib{artifact}-java"]
    last = group.rsplit(".", 1)[-1]
    if not artifact.startswith(last):
        names.append(f"lib{last}-{artifact}-java")
    return names


class Java(debian.DebianInstaller):
    language = "java"
    image = "java"
    sources = "pom.xml or build.gradle(.kts)"  # read by manifests.py; for messages (plan reads _MANIFESTS)
    what = "Maven coordinates (groupId:artifactId)"
    names = _NAME
    trees = {"lib": "usr/share/java"}
    folder = JAVA_TARGET
    candidates = staticmethod(candidates)

    def plan(self, at, parsed) -> dict:
        for manifest in _MANIFESTS:
            source = at(manifest)
            if source in parsed:
                return {"supported": True, "source": source,
                        "packages": list(dict.fromkeys(
                            p.name for p in parsed[source]
                            if not p.dev and ":" in p.name and not p.name.endswith("-parent")))}
        return {"supported": True, "source": None, "packages": []}

    def kernel_env(self, root: str) -> dict[str, str]:
        # jjava fails to start when a glob's folder is missing (nothing installed yet), so
        # the glob starts at the root, which exists: .kernelgate* matches .kernelgate.
        lib = posixpath.join(root, JAVA_TARGET, "lib")
        return {"JJAVA_CLASSPATH": posixpath.join(root, ".kernelgate*", "java", "lib", "*.jar"),
                "KERNELGATE_JAVA_LIB": lib}


INSTALLER = Java()
