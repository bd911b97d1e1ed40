"""The alert rules: what ``config/alerts.toml`` may say, typed and checked on load.

A rule watches one domain's scored results per entity (ticker, customer, machine) over a
window of event time ending at each new result, and fires when its figure crosses a threshold:

* ``mean``: the mean of a numeric field (``sentiment``) is ``below`` or ``above`` a value;
* ``count``: at least ``at_least`` results match ``when`` (``risk_level`` equals ``high``);
* ``share``: at least a fraction ``at_least`` of the results match ``when`` (negative share,
  failure rate);
* ``consecutive``: the latest ``at_least`` results in a row match ``when``
  (``failure_probability`` above 0.8).

Every rule needs ``min_count`` results in the window before it may fire, and stays quiet for
``cooldown`` (event time) per entity after firing. Field names are checked against the
domain's scored result (``streams/schemas.py``), so a typo fails at start-up, not in silence.
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

import domains
from config.settings import DomainName, SettingsError

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")  # least to most severe

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class RulesError(SettingsError):
    """The rules file is missing or invalid; the message is one line naming the problem."""


def parse_duration(value: Any) -> Any:
    """``"15m"``, ``"1h"``, ``"30s"``, ``"2d"``, ``"500ms"`` as a timedelta; others pass through."""
    if not isinstance(value, str):
        return value
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration like 30s, 15m, 1h or 2d")
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


Duration = Annotated[timedelta, BeforeValidator(parse_duration), Field(gt=timedelta(0))]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """What makes one result count: a field ``equals`` a value, or is ``above``/``below`` one."""

    field: str
    equals: str | bool | None = None
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        given = [name for name in ("equals", "above", "below") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a condition on {self.field} needs exactly one of equals, above, below"
            )
        return self

    def holds(self, value: Any) -> bool:
        if self.equals is not None:
            return value == self.equals
        if value is None:
            return False
        if self.above is not None:
            return value > self.above
        return value < self.below  # type: ignore[operator]

    @property
    def text(self) -> str:
        """The condition as people write it, for evidence and display."""
        if self.equals is not None:
            return f"{self.field} == {self.equals}"
        if self.above is not None:
            return f"{self.field} > {self.above:g}"
        return f"{self.field} < {self.below:g}"


class _Rule(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")
    domain: DomainName
    severity: Severity
    window: Duration
    cooldown: Duration
    min_count: int = Field(default=1, gt=0)

    def fields(self) -> set[str]:
        """The fields of a result this rule reads."""
        raise NotImplementedError


class MeanRule(_Rule):
    kind: Literal["mean"]
    field: str
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> MeanRule:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"rule {self.name}: a mean rule needs exactly one of above, below")
        return self

    def fields(self) -> set[str]:
        return {self.field}


class CountRule(_Rule):
    kind: Literal["count"]
    when: Condition
    at_least: int = Field(gt=0)

    def fields(self) -> set[str]:
        return {self.when.field}


class ShareRule(_Rule):
    kind: Literal["share"]
    when: Condition
    at_least: float = Field(gt=0, le=1)

    def fields(self) -> set[str]:
        return {self.when.field}


class ConsecutiveRule(_Rule):
    kind: Literal["consecutive"]
    when: Condition
    at_least: int = Field(gt=0)

    def fields(self) -> set[str]:
        return {self.when.field}


Rule = Annotated[MeanRule | CountRule | ShareRule | ConsecutiveRule, Field(discriminator="kind")]
NUMERIC = (int, float, bool)
_KINDS = {
    kind
    for rule in (MeanRule, CountRule, ShareRule, ConsecutiveRule)
    for kind in rule.model_fields["kind"].annotation.__args__
}


class RuleBook(_Strict):
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> RuleBook:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        for rule in self.rules:
            _check_fields(rule)
        return self

    def for_domain(self, domain: DomainName) -> list[Rule]:
        return [rule for rule in self.rules if rule.domain == domain]


def _check_fields(rule: Rule) -> None:
    schema = domains.get(rule.domain).result.model_fields
    for name in rule.fields():
        if name not in schema:
            known = ", ".join(sorted(schema))
            raise ValueError(
                f"rule {rule.name}: {rule.domain} results have no field {name!r} (fields: {known})"
            )
    if isinstance(rule, MeanRule):
        field, expected = rule.field, NUMERIC
    elif rule.when.equals is None:
        field, expected = rule.when.field, NUMERIC
    else:
        # A string never equals a flag: refuse what could only ever stay silent.
        field, expected = rule.when.field, (type(rule.when.equals),)
    if schema[field].annotation not in expected:
        wanted = "a number" if expected is NUMERIC else f"a {expected[0].__name__}"
        raise ValueError(f"rule {rule.name}: field {field!r} is not {wanted}")


def load_rules(path: Path) -> RuleBook:
    """The rules of a TOML file (``[[rules]]`` tables), or RulesError in one line."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RulesError(
            f"alert rules file {path} not found (set SIGNALYARD_ALERTS__RULES_FILE)"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"alert rules file {path} is not valid TOML: {error}") from None
    try:
        return RuleBook.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        raise RulesError(f"invalid alert rules in {path}: {problems}") from None


def _describe(problem: Any) -> str:
    # The union's tag (mean, count, ...) in the location says nothing the file does not.
    where = ".".join(str(part) for part in problem["loc"] if part not in _KINDS)
    return f"{where}: {problem['msg']}" if where else problem["msg"]
