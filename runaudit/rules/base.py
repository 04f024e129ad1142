"""Rules as small declarative classes that compile to SQL, and the registry that holds them.

A rule has a code (``IN02``), a name, the outcome it assigns, the signal it records as evidence, whether the
run is retryable, groups, and a docstring whose first line is its one-line description followed by
**Matches** / **Does not match** examples. ``predicate(cfg)`` returns parameterised SQL (each ``$?`` is a
bound parameter, numbered by the compiler) over the columns of the classification scan; the classifier joins
all enabled rules into one ``CASE WHEN`` in priority order, so a run gets the first rule that matches.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from runaudit.config import Config
from runaudit.errors import RuleConfigError, UsageError

OUTCOMES = ("ok", "infra_error", "declined", "degraded")


@dataclass(frozen=True)
class Compiled:
    """A rule's SQL with its bound parameters; each ``$?`` in ``sql`` takes the next parameter."""

    sql: str
    params: tuple[Any, ...] = ()


class Rule:
    """Base class of every outcome and done-condition rule."""

    code: ClassVar[str]
    name: ClassVar[str]
    outcome: ClassVar[str]
    signal: ClassVar[str]
    retryable: ClassVar[bool] = False
    groups: ClassVar[tuple[str, ...]] = ("all",)
    #: SQL for the sub-reason (a literal or an expression over the scan's columns)
    sub_reason_sql: ClassVar[str] = "NULL"

    def predicate(self, cfg: Config) -> Compiled | None:
        """The match condition, or None when the rule is disabled under ``cfg``."""
        raise NotImplementedError

    def outcome_for(self, cfg: Config) -> str:
        """The outcome this rule assigns (some rules take it from the config)."""
        return self.outcome

    @classmethod
    def description(cls) -> str:
        """The first paragraph of the docstring, on one line, as plain text."""
        first = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
        return plain(" ".join(first.split()))

    @classmethod
    def doc(cls) -> str:
        """The full docstring, as plain text for a terminal."""
        return plain(inspect.cleandoc(cls.__doc__ or ""))


def plain(text: str) -> str:
    """Docstring markup (``code``, **bold**) removed, for a terminal or JSON."""
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text.replace("``", ""))


class RuleSet:
    """An ordered registry of rules (priority = registration order)."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []

    def register(self, rule_cls: type[Rule]) -> type[Rule]:
        """Register a rule class; rejects duplicate codes, missing docstrings and unknown outcomes."""
        code = getattr(rule_cls, "code", None)
        if not code:
            raise RuleConfigError(f"rule {rule_cls.__name__} has no code")
        if any(r.code == code for r in self._rules):
            raise RuleConfigError(f"duplicate rule code {code}")
        doc = inspect.cleandoc(rule_cls.__doc__ or "")
        if not doc or "Matches" not in doc:
            raise RuleConfigError(f"rule {code} needs a docstring with a description and **Matches** examples")
        if rule_cls.outcome not in OUTCOMES:
            raise RuleConfigError(f"rule {code} has unknown outcome {rule_cls.outcome!r}")
        self._rules.append(rule_cls())
        return rule_cls

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def get(self, code: str) -> Rule:
        """The rule with ``code`` (case-insensitive)."""
        for r in self._rules:
            if r.code.lower() == code.lower():
                return r
        raise UsageError(f"no rule with code {code!r}", hint="see `runaudit rules list`")
