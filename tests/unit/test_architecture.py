"""The tree's rules: one domain, one module.

A domain's name may appear in the code of its own module only (``domains/<name>.py``); tests,
benchmarks (which measure named data sets) and the settings files aside. Docstrings and
comments may use a domain as an example; names and string literals may not, since a branch or a
dictionary keyed by a domain's name is what makes adding a domain a fork.
"""

from __future__ import annotations

import io
import re
import token
import tokenize
from pathlib import Path

import domains

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "domains", "sinks", "streams", "signalyard")


def _code_words(source: str) -> set[str]:
    """The lowercase words of a module's names and non-docstring string literals."""
    words: set[str] = set()
    previous = token.NEWLINE
    for item in tokenize.generate_tokens(io.StringIO(source).readline):
        is_docstring = item.type == token.STRING and previous in (
            token.NEWLINE,
            token.INDENT,
            token.DEDENT,
            tokenize.NL,
        )
        if item.type in (token.NAME, token.STRING) and not is_docstring:
            # Split snake_case, CamelCase and dotted names into their words.
            spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", item.string)
            words |= {word.lower() for word in re.findall(r"[A-Za-z]+", spaced)}
        if item.type not in (tokenize.COMMENT,):
            previous = item.type
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
    assert name not in _code_words(f'"""Scores {name}."""\n# {name}\nx = 1\n')
