"""Errors meant for people: what is wrong, where, and what to do about it."""

from __future__ import annotations


class CrmdError(Exception):
    """Base of every expected crmd error; the CLI prints it without a traceback."""


class ConfigError(CrmdError):
    """A site, rule or channel file is wrong."""


class RuleError(ConfigError):
    """One problem in a rule file, located as file:line:col (1-based) and rule id."""

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        rule_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.rule_id = rule_id

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.col) if p is not None)
        rule = f" (rule {self.rule_id})" if self.rule_id else ""
        return f"{where}: {self.message}{rule}" if where else f"{self.message}{rule}"


class RuleSetError(ConfigError):
    """Every problem found in a rule set; the set is rejected whole."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class CalendarNotPublished(CrmdError):
    """The official working-day calendar for a year is not known yet."""

    def __init__(self, year: int, last_published: int) -> None:
        self.year = year
        self.last_published = last_published
        super().__init__(
            f"China's official working-day calendar for {year} is not published in this "
            f"installation (known through {last_published}). Upgrade the 'holidays' package, "
            f"or add the year's days off and make-up working days under 'calendar:' in "
            f"site.yaml and raise 'published_through' (docs/sites.md, *The working calendar*)."
        )


class ImportFileError(CrmdError):
    """A CSV file could not be imported; nothing from it was stored."""


class NotFound(CrmdError):
    """A task, message or record named by the user does not exist."""
