"""PHP: a composer.json's require, from Debian's php-* packages (debian.py's fetch).

- Extensions (`ext-bcmath`) are Debian's php-<name>: their shared objects
  (/usr/lib/php/<API>) go to /workspace/.kernelgate/php/ext, and for each extension the
  image's PHP does not already load, Debian's ini (/usr/share/php<version>-<name>/*/*.ini,
  which a maintainer script would enable) is written into .kernelgate/php/conf.d with the
  extension's path made `${KERNELGATE_PHP}/ext/<name>.so` (PHP expands the variable when it
  reads the file).
- Libraries (`vendor/name`) are Debian's php-<vendor>-<name> (or `DEBIAN_NAMES`): their
  /usr/share/php trees go to .kernelgate/php/lib, which conf.d/00-kernelgate.ini puts on
  PHP's include_path after Debian's own (`require 'Psr/Log/autoload.php';`).

Kernels' PHP_INI_SCAN_DIR starts with ':' (PHP's own scan folder first, then ours).
Platform requirements (`php`, `lib-*`, `composer-*`) are not packages and are left out.
"""

from __future__ import annotations

import posixpath
import re

from kernelgate.environment import manifests
from kernelgate.environment.installers import debian
from kernelgate.environment.installers.base import Context, Fetch

#: Where extensions, their ini files and libraries go, relative to the workspace.
PHP_TARGET = ".kernelgate/php"
#: Composer package -> Debian package, where Debian's is not the rule's (see candidates).
DEBIAN_NAMES = {"monolog/monolog": "php-monolog", "twig/twig": "php-twig", "phpunit/phpunit": "phpunit",
                "guzzlehttp/guzzle": "php-guzzlehttp-guzzle", "nikic/php-parser": "php-nikic-php-parser",
                "erusev/parsedown": "php-parsedown", "league/commonmark": "php-league-commonmark"}
#: Extension -> Debian package, where Debian's is not php-<extension> (several extensions
#: share a package).
EXTENSIONS = {"pdo_sqlite": "php-sqlite3", "sqlite3": "php-sqlite3", "pdo_mysql": "php-mysql", "mysqli": "php-mysql",
              "mysqlnd": "php-mysql", "pdo_pgsql": "php-pgsql", "dom": "php-xml", "simplexml": "php-xml",
              "xmlreader": "php-xml", "xmlwriter": "php-xml", "xsl": "php-xml", "pdo_odbc": "php-odbc"}
_NAME = re.compile(r"(ext-[a-z0-9_]+|[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*)\Z")
_PLATFORM = re.compile(r"(php(-64bit|-ipv6|-zts|-debug)?|hhvm|composer(-plugin|-runtime)?-api|composer|lib-.+)\Z")
#: The image already has the extension (a shell test of "$1", the requested name).
_HAVE = """case "$1" in ext-*) php -r 'exit(extension_loaded($argv[1]) ? 0 : 1);' "${1#ext-}";; *) false;; esac"""
#: Run after debian.py's merge (in the unpacked root): the ini files of the new extensions.
_ENABLE = r"""
mkdir -p "$out/conf.d"
printf '%s\n' 'include_path = ".:/usr/share/php:${KERNELGATE_PHP}/lib"' > "$out/conf.d/00-kernelgate.ini"
for ini in usr/share/php[0-9]*-*/*/*.ini; do
  [ -f "$ini" ] || continue
  module=$(basename "$ini" .ini)
  if php -r 'exit(extension_loaded($argv[1]) ? 0 : 1);' "$module"; then echo "$module: already loaded by the image"; continue; fi
  priority=$(sed -n 's/^; *priority=\([0-9][0-9]*\).*/\1/p' "$ini")
  sed 's#^\(zend_\)\{0,1\}extension=\([A-Za-z0-9_.-]*\)$#\1extension=${KERNELGATE_PHP}/ext/\2#' "$ini" \
    > "$out/conf.d/${priority:-20}-$module.ini"
  echo "$module: enabled"
done
"""


def composer_json(data: bytes) -> list[manifests.Package]:
    """composer.json's require (and require-dev, dev), extensions (`ext-*`) included;
    platform requirements (php, lib-*, composer-*) left out."""
    doc = manifests._json(data)
    return [manifests.Package(name, str(spec), dev)
            for key, dev in (("require", False), ("require-dev", True))
            for name, spec in (doc.get(key) or {}).items()
            if not _PLATFORM.match(name.lower())]


def candidates(name: str) -> list[str]:
    """Debian packages that may provide a requirement: for `ext-<extension>` EXTENSIONS'
    name, else php-<extension>; for a library DEBIAN_NAMES', else php-<vendor>-<name>
    (php-<name> when vendor and name are the same: monolog/monolog). php-<name> alone
    would be another library (php-log is PEAR's Log, not psr/log)."""
    name = name.lower()
    if name.startswith("ext-"):
        return [EXTENSIONS.get(name[4:], "php-" + name[4:].replace("_", "-"))]
    if name in DEBIAN_NAMES:
        return [DEBIAN_NAMES[name]]
    vendor, package = (part.replace("_", "-").replace(".", "-") for part in name.split("/", 1))
    package = package.removeprefix("php-")
    return [f"php-{package}"] if vendor == package else [f"php-{vendor}-{package}"]


class Php(debian.DebianInstaller):
    language = "php"
    image = "php"
    manifests = {"composer.json": manifests.Manifest("php", "composer", composer_json)}
    sources = "composer.json"
    what = "Composer package names (vendor/name or ext-name)"
    names = _NAME
    have = _HAVE
    trees = {"ext": "usr/lib/php/[0-9]*", "lib": "usr/share/php"}
    folder = PHP_TARGET
    candidates = staticmethod(candidates)

    def fetch(self, install: dict, context: Context) -> Fetch:
        fetch = super().fetch(install, context)
        command = [*fetch.command[:2], fetch.command[2] + _ENABLE, *fetch.command[3:]]
        return Fetch(command, fetch.env, fetch.working_dir, fetch.moves, fetch.summary)

    def kernel_env(self, root: str) -> dict[str, str]:
        base = posixpath.join(root, PHP_TARGET)
        return {"PHP_INI_SCAN_DIR": f":{base}/conf.d", "KERNELGATE_PHP": base}


INSTALLER = Php()
