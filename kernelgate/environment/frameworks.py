"""Frameworks, from declared packages and from the imports of source files. No I/O."""

from __future__ import annotations

import json
import re

#: language -> {package or import name: framework}. A name ending in "/" matches as a prefix.
FRAMEWORKS: dict[str, dict[str, str]] = {
    "python": {
        "django": "Django", "flask": "Flask", "fastapi": "FastAPI", "starlette": "Starlette",
        "tornado": "Tornado", "aiohttp": "aiohttp", "streamlit": "Streamlit", "dash": "Dash",
        "pandas": "pandas (data)", "numpy": "NumPy (data)", "scipy": "SciPy (data)",
        "polars": "Polars (data)", "matplotlib": "Matplotlib (data)",
        "scikit-learn": "scikit-learn (ML)", "sklearn": "scikit-learn (ML)",
        "torch": "PyTorch (ML)", "tensorflow": "TensorFlow (ML)", "jax": "JAX (ML)",
        "pytest": "pytest (tests)",
    },
    "javascript": {
        "react": "React", "next": "Next.js", "express": "Express", "vue": "Vue",
        "@angular/core": "Angular", "svelte": "Svelte", "@sveltejs/kit": "SvelteKit",
        "nuxt": "Nuxt", "fastify": "Fastify", "koa": "Koa", "@nestjs/core": "NestJS",
        "vite": "Vite", "jest": "Jest (tests)", "vitest": "Vitest (tests)",
    },
    "go": {
        "github.com/gin-gonic/gin": "Gin", "github.com/labstack/echo/": "Echo",
        "github.com/gofiber/fiber/": "Fiber", "github.com/gorilla/mux": "Gorilla mux",
        "github.com/go-chi/chi/": "chi", "net/http": "net/http",
        "google.golang.org/grpc": "gRPC", "github.com/spf13/cobra": "Cobra (CLI)",
    },
    "rust": {
        "actix-web": "Actix Web", "axum": "Axum", "rocket": "Rocket", "warp": "warp",
        "tokio": "Tokio", "serde": "Serde", "clap": "clap (CLI)", "bevy": "Bevy",
        "tauri": "Tauri", "diesel": "Diesel", "sqlx": "SQLx",
    },
    "java": {
        "org.springframework.boot": "Spring Boot", "org.springframework.boot/": "Spring Boot",
        "org.springframework/": "Spring", "io.quarkus/": "Quarkus", "io.micronaut/": "Micronaut",
        "junit:junit": "JUnit (tests)", "org.junit.jupiter/": "JUnit (tests)",
    },
    "ruby": {"rails": "Rails", "sinatra": "Sinatra", "rspec": "RSpec (tests)", "hanami": "Hanami"},
    "php": {"laravel/framework": "Laravel", "symfony/": "Symfony", "slim/slim": "Slim",
            "phpunit/phpunit": "PHPUnit (tests)"},
    "r": {"shiny": "Shiny", "tidyverse": "tidyverse (data)", "dplyr": "dplyr (data)",
          "ggplot2": "ggplot2 (data)", "data.table": "data.table (data)", "plumber": "plumber"},
}


def framework_of(language: str, name: str) -> str | None:
    """The framework a package or import name signals, if any."""
    table = FRAMEWORKS.get(language, {})
    lowered = name.lower()
    if lowered in table:
        return table[lowered]
    group = lowered.split(":", 1)[0]  # Maven groupId:artifactId
    for key, framework in table.items():
        if key.endswith("/") and (lowered.startswith(key) or group + "/" == key or lowered + "/" == key):
            return framework
    return None


#: Source file suffix -> language whose imports it shows.
SOURCES = {".py": "python", ".ipynb": "python", ".js": "javascript", ".mjs": "javascript",
           ".cjs": "javascript", ".jsx": "javascript", ".ts": "javascript", ".tsx": "javascript",
           ".go": "go"}

_PY_IMPORT = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w]*)[\w.]*\s+import|import\s+([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*))", re.M)
_JS_IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]""")
_GO_IMPORT = re.compile(r'^\s*(?:import\s+)?(?:[\w.]+\s+)?"([^"]+)"\s*$', re.M)


def _python_imports(text: str) -> set[str]:
    found = set()
    for from_name, names in _PY_IMPORT.findall(text):
        if from_name:
            found.add(from_name)
        for name in (names.split(",") if names else []):
            found.add(name.strip().split(".")[0])
    return found


def _js_package(specifier: str) -> str | None:
    """The npm package a JS/TS import specifier names (version dropped), or None."""
    if specifier.startswith(("node:", ".", "/", "http:", "https:", "jsr:")):
        return None
    specifier = specifier.removeprefix("npm:")
    parts = specifier.split("/")
    if specifier.startswith("@"):
        return "@" + "/".join(parts[:2])[1:].partition("@")[0]
    return parts[0].partition("@")[0] or None


def imports(suffix: str, data: bytes) -> set[str]:
    """Top-level module or package names a source file imports."""
    text = data.decode("utf-8", errors="replace")
    if suffix == ".ipynb":
        try:
            cells = json.loads(text).get("cells", [])
            text = "\n".join("".join(c.get("source", "")) if isinstance(c.get("source"), list)
                             else str(c.get("source", "")) for c in cells
                             if isinstance(c, dict) and c.get("cell_type") == "code")
        except (ValueError, AttributeError):
            return set()
    language = SOURCES[suffix]
    if language == "python":
        return _python_imports(text)
    if language == "javascript":
        return {p for p in (_js_package(s) for s in _JS_IMPORT.findall(text)) if p}
    return set(_GO_IMPORT.findall(text))
