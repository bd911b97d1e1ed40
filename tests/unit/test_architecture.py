"""The tree's rules: one domain, one module; SQL in the store; a worker without training code.

A domain's name may appear in the code of its own module only (``domains/<name>.py``); tests,
benchmarks (which measure named data sets) and the settings files aside. Docstrings and
comments may use a domain as an example; names and string literals may not, since a branch or a
dictionary keyed by a domain's name is what makes adding a domain a fork.
"""

from __future__ import annotations

import ast
import io
import re
import token
import tokenize
from pathlib import Path

import domains

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "domains", "store", "streams", "signalyard")


def _code_tokens(source: str) -> list[tokenize.TokenInfo]:
    """A module's names and string literals, docstrings left out."""
    found = []
    previous, depth = token.NEWLINE, 0
    for item in tokenize.generate_tokens(io.StringIO(source).readline):
        if item.type == token.OP and item.string in "([{":
            depth += 1
        elif item.type == token.OP and item.string in ")]}":
            depth -= 1
        # A docstring is a statement of its own; a string that starts a line inside brackets
        # (a dictionary's key, say) is code.
        is_docstring = (
            item.type == token.STRING
            and depth == 0
            and previous in (token.NEWLINE, token.INDENT, token.DEDENT, tokenize.NL)
        )
        if item.type in (token.NAME, token.STRING) and not is_docstring:
            found.append(item)
        if item.type not in (tokenize.COMMENT,):
            previous = item.type
    return found


def _code_words(source: str) -> set[str]:
    """The lowercase words of a module's names and non-docstring string literals."""
    words: set[str] = set()
    for item in _code_tokens(source):
        # Split snake_case, CamelCase and dotted names into their words.
        spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", item.string)
        words |= {word.lower() for word in re.findall(r"[A-Za-z]+", spaced)}
    return words


def _naming_domains() -> dict[str, set[str]]:
    names = set(domains.names())
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            named = _code_words(path.read_text(encoding="utf-8")) & names
            if package == "domains":
                named -= {path.stem}
            if named:
                found[module] = named
    return found


def test_no_module_names_a_domain_outside_its_own() -> None:
    naming = {module: sorted(named) for module, named in _naming_domains().items()}
    assert not naming, f"modules that name domains outside their own module: {naming}"


def test_the_check_sees_a_domain_name_in_code_but_not_in_prose() -> None:
    name = domains.names()[0]
    assert name in _code_words(f'x = {{"{name}": 1}}\n')
    assert name in _code_words(f"def score_{name}() -> None: ...\n")
    assert name in _code_words(f'FIELDS = {{\n    "{name}": "id",\n}}\n')
    assert name not in _code_words(f'"""Scores {name}."""\n# {name}\nx = 1\n')


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports anywhere in its code, functions included."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # ``from package import module`` imports the module too.
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and _is_module(name):
                found.add(name)
    return found


def _is_module(name: str) -> bool:
    base = ROOT / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module) - seen)
    return seen


def test_a_worker_imports_serving_code_and_no_training_code() -> None:
    """The scoring worker (``streams.app``) and everything in ``models.serving`` reach no module
    of ``models.training``, even through an import inside a function."""
    starts = ["streams.app"] + [
        f"models.serving.{path.stem}" for path in (ROOT / "models" / "serving").glob("*.py")
    ]
    for start in starts:
        training = sorted(m for m in _reachable(start) if m.startswith("models.training"))
        assert not training, f"{start} reaches training code: {training}"
    assert "models.serving.loading" in _reachable("streams.app")
    assert "models.training.trainer" in _reachable("signalyard.cli.models")


# A statement's first words, as SQL writes them: in a string of code, they are SQL.
SQL = re.compile(r"\b(SELECT|INSERT INTO|DELETE FROM|CREATE TABLE|ALTER TABLE|OPTIMIZE TABLE)\s")


def test_sql_lives_in_the_store() -> None:
    """No module outside ``store/`` builds SQL; a domain's module holds its own chart's."""
    building = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        if package not in ("store", "domains")
        for path in (ROOT / package).rglob("*.py")
        if any(SQL.search(t.string) for t in _code_tokens(path.read_text(encoding="utf-8")))
    }
    assert not building, f"modules that build SQL outside store/: {sorted(building)}"
    built = _code_tokens('sql = f"SELECT {columns} FROM {table}"\n')
    assert any(SQL.search(t.string) for t in built)
