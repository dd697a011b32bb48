"""The README documents exactly the configuration the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from gwsync.core.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_table_matches_settings() -> None:
    """Every setting has a row in the README's table, and every row is a real setting."""
    rows = re.findall(r"^\| `(?:PORT` \(or `)?GWSYNC_([A-Z0-9_]+)`", README.read_text(),
                      re.MULTILINE)
    assert sorted(r.lower() for r in rows) == sorted(Settings.model_fields)


def test_readme_shows_the_commands_ci_runs() -> None:
    """The test command in .ci/run is the one the README gives."""
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./bin/test" in ci and "./bin/test" in README.read_text()


ROOT = README.parent
DOCS = (README, ROOT / "docs" / "architecture.md", ROOT / "docs" / "google.md")
#: A repository path as the docs write it: `gwsync/web/http.py`, `tests/e2e/`, …
PATH = re.compile(r"(?<![\w/.-])((?:gwsync|tests|bench|docs|deploy|bin)/[\w./-]*[\w/])")
#: A dotted name the docs promise exists: `gwsync.storage.purge.begin`.
DOTTED = re.compile(r"`(gwsync(?:\.\w+)+)`")
#: "docs/google.md §5.6", "docs/architecture.md §4, §7", …
CITATION = re.compile(r"docs/(google|architecture)\.md((?:,? §\d+(?:\.\d+)?)+)")
#: What code must not cite: files that live outside the repository.
OUTSIDE = re.compile(r"DESIGN\.md|reference §|shared/reference")


def _code_files() -> list[Path]:
    files = [p for top in ("gwsync", "tests", "bench") for p in (ROOT / top).rglob("*.py")]
    return [p for p in files if p != Path(__file__).resolve()]


def test_every_path_the_docs_name_exists() -> None:
    """README.md and docs/ name only files and folders that are in the repository."""
    missing = {f"{doc.name}: {path}" for doc in DOCS
               for path in PATH.findall(doc.read_text()) if not (ROOT / path).exists()}
    assert not missing


def test_every_function_the_docs_name_exists() -> None:
    """Each dotted gwsync name in README.md and docs/ imports (module, then attributes)."""
    import importlib

    missing = []
    for doc in DOCS:
        for name in set(DOTTED.findall(doc.read_text())):
            parts = name.split(".")
            found: object = None
            for cut in range(len(parts), 0, -1):
                try:
                    found = importlib.import_module(".".join(parts[:cut]))
                    break
                except ImportError:
                    continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            if found is None:
                missing.append(f"{doc.name}: {name}")
    assert not missing


def _sections(doc: str) -> set[str]:
    text = (ROOT / "docs" / f"{doc}.md").read_text()
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.MULTILINE))


def test_code_cites_only_sections_that_exist_in_the_repository() -> None:
    """Comments cite docs/google.md and docs/architecture.md by sections they have, and
    never files a reader of the repository does not have."""
    sections = {doc: _sections(doc) for doc in ("google", "architecture")}
    wrong = []
    for path in _code_files():
        text = path.read_text()
        wrong += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
        for doc, cited in CITATION.findall(text):
            wrong += [f"{path.relative_to(ROOT)}: {doc} §{n}"
                      for n in re.findall(r"§([\d.]+)", cited) if n not in sections[doc]]
    assert not wrong


def _route_modules() -> list[tuple[str, str]]:
    """(route path, module) for each row of README's route tables that names a module."""
    rows = re.findall(r"^\| `(?:GET|POST|DELETE) ([^|]+?)` [^|]*\| `(\w+\.py)` \|",
                      README.read_text(), re.MULTILINE)
    found = []
    for routes, module in rows:
        for route in routes.replace("`", "").split(", "):
            route = route.split("?")[0].removeprefix("GET ").removeprefix("POST ")
            either = re.search(r"\{(\w+(?:,\w+)+)\}", route)  # /webhooks/google/{a,b}
            if either is None:
                found.append((route, module))
                continue
            found += [(route.replace(either.group(0), o), module)
                      for o in either.group(1).split(",")]
    return found


def test_each_route_lives_in_the_module_the_readme_names() -> None:
    """Every route of README's tables is registered by the `gwsync/web/` module it names."""
    routes = _route_modules()
    assert len(routes) >= 19
    wrong = []
    for route, module in routes:
        source = (ROOT / "gwsync" / "web" / module).read_text()
        registered = {re.sub(r"\{\w+\}", "{}", r)
                      for r in re.findall(r"add_(?:get|post|delete)\(\"([^\"]+)\"", source)}
        if re.sub(r"\{\w+\}", "{}", route) not in registered:
            wrong.append(f"{route} is not in gwsync/web/{module}")
    assert not wrong
