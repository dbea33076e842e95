"""Rule files: read with positions, checked whole, compiled into one immutable RuleSet.

All files load together or not at all: every problem in every file is collected and raised
as one RuleSetError, each located as `file:line:col`. Loading is pure (no store, no clock),
so `crmd check`, daemon start and reload run the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crmd.errors import RuleError, RuleSetError
from crmd.rules.compile_rule import RuleCompiler, set_fields_of
from crmd.rules.rule import Rule, RuleSet
from crmd.rules.schema import schema_problems
from crmd.rules.yamlpos import JsonPath, YamlSource, read_yaml
from crmd.site import Site

__all__ = ["check_summary", "load_rule_files", "load_rules"]


def load_rules(site: Site) -> RuleSet:
    """Load every `*.yaml` file in the site's rules directory, in name order."""
    if not site.rules_dir.is_dir():
        raise RuleSetError(
            [RuleError(f"no rules directory at {site.rules_dir}: put the rule files there")]
        )
    return load_rule_files(sorted(site.rules_dir.glob("*.yaml"), key=lambda p: p.name), site)


def load_rule_files(paths: Sequence[Path], site: Site) -> RuleSet:
    """Load these rule files as one set; raise RuleSetError listing every problem."""
    errors: list[RuleError] = []
    sources = [read_yaml(path, _display_name(path, site), errors) for path in paths]
    first_seen: dict[str, str] = {}  # rule id -> "file:line" where it is first defined
    to_compile: list[tuple[YamlSource, int, dict[str, Any]]] = []
    for source in sources:
        if source.failed:
            continue
        broken = _schema_errors(source, errors)
        for index, raw in enumerate(_rules(source)):
            rule_id = raw.get("id") if isinstance(raw, dict) else None
            if not isinstance(rule_id, str):
                continue
            path: JsonPath = ("rules", index, "id")
            if rule_id in first_seen:
                errors.append(
                    source.error(
                        f"duplicate rule id '{rule_id}'; it is first defined at "
                        f"{first_seen[rule_id]}. Rule ids must be unique across all files",
                        path,
                        rule_id=rule_id,
                    )
                )
            else:
                first_seen[rule_id] = f"{source.name}:{source.where(path)[0]}"
            if index not in broken:
                to_compile.append((source, index, raw))
    # The dates `set` actions store, for date triggers and templates anywhere in the set.
    set_fields = set_fields_of([raw for _, _, raw in to_compile])
    rules: list[Rule] = []
    for source, index, raw in to_compile:
        try:
            compiler = RuleCompiler(source, index, raw, site, set(first_seen), errors, set_fields)
            rule = compiler.compile()
        except Exception as exc:  # whatever a rule's text makes a check raise (issue 14)
            # Its error, at its id: `crmd check` never ends in a traceback, nor a reload in
            # a dead daemon.
            errors.append(
                source.error(
                    f"crmd could not check this rule ({type(exc).__name__}: {exc}); change "
                    f"the rule, and report the rule to crmd's maintainers: the check should "
                    f"have said what is wrong",
                    ("rules", index, "id"),
                    rule_id=raw["id"],
                )
            )
            continue
        if rule is not None:
            rules.append(rule)
    if errors:
        errors.sort(key=lambda e: (e.file or "", e.line or 0, e.col or 0))
        raise RuleSetError(errors)
    counts = {source.name: 0 for source in sources}
    for rule in rules:
        counts[rule.file] += 1
    return RuleSet(rules=tuple(rules), files=counts)


def check_summary(ruleset: RuleSet) -> list[tuple[str, int]]:
    """Each loaded file with its number of rules, in load order, for `crmd check`."""
    return list(ruleset.files.items())


def _display_name(path: Path, site: Site) -> str:
    for candidate, root in ((path, site.root), (path.resolve(), site.root.resolve())):
        try:
            return candidate.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(path)


def _schema_errors(source: YamlSource, errors: list[RuleError]) -> set[int]:
    """Add the file's shape errors; return the indexes of rules too broken to check further."""
    broken: set[int] = set()
    for path, (line, col), message in source.duplicates:
        errors.append(RuleError(message, source.name, line, col, _rule_id_at(source, path)))
    if source.data is None:  # an empty file: no rules
        return broken
    for problem in schema_problems(source.data):
        errors.append(
            source.error(
                problem.message,
                problem.path,
                at_key=problem.at_key,
                rule_id=_rule_id_at(source, problem.path),
            )
        )
        if len(problem.path) >= 2 and isinstance(problem.path[1], int):
            broken.add(problem.path[1])
    return broken


def _rules(source: YamlSource) -> list[Any]:
    """The file's list of rules, or none if it has no such list."""
    rules = source.data.get("rules") if isinstance(source.data, dict) else None
    return rules if isinstance(rules, list) else []


def _rule_id_at(source: YamlSource, path: JsonPath) -> str | None:
    """The id of the rule that `path` is in, if it has one."""
    rules = _rules(source)
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        raw = rules[path[1]] if path[1] < len(rules) else None
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        return rule_id if isinstance(rule_id, str) else None
    return None
