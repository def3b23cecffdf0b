"""Prompt templates: data files (one per task and domain), validated on load.

A template is a YAML mapping: `task`, `domain`, the `placeholders` its `user` text declares, a
`system` text, and the task's pieces (history line, hint line, answer). Placeholders are
`{name}`; a literal brace is written `{{` or `}}`. On load every piece is checked against the
task's schema: a piece that is missing, a placeholder that is undeclared, unused or unknown, or a
declared list that differs from what `user` uses is a `TemplateError` naming the file and line.
The same template renders training and inference prompts. A pairwise hint names the preferred
item by `{preferred}` (its title) or `{which}` ("first" or "second").

The packaged templates of a domain share their system text and their history block, so every
prompt of one user starts with the same tokens and the ranker computes that prefix once
(`recranker.ranking`); custom templates that differ there still work, only slower.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from recranker.errors import RecrankerError

Task = Literal["pointwise", "pairwise", "listwise"]
TASKS: tuple[Task, ...] = ("pointwise", "pairwise", "listwise")
DOMAINS = ("movies", "books", "products")

#: per task: piece -> (allowed placeholders, required placeholders)
SCHEMA: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "pointwise": {
        "user": (frozenset({"history", "target", "hint"}), frozenset({"history", "target"})),
        "history_item": (frozenset({"title", "rating"}), frozenset({"title"})),
        "hint": (frozenset({"rating"}), frozenset({"rating"})),
        "answer": (frozenset({"rating"}), frozenset({"rating"})),
    },
    "pairwise": {
        "user": (frozenset({"history", "liked", "disliked", "first", "second", "hint"}), frozenset({"first", "second"})),
        "history_item": (frozenset({"title", "rating"}), frozenset({"title"})),
        "hint": (frozenset({"preferred", "which"}), frozenset()),
        "answer_yes": (frozenset(), frozenset()),
        "answer_no": (frozenset(), frozenset()),
    },
    "listwise": {
        "user": (frozenset({"history", "candidates", "count", "top", "hint"}), frozenset({"history", "candidates"})),
        "history_item": (frozenset({"title", "rating"}), frozenset({"title"})),
        "candidate_item": (frozenset({"id", "title"}), frozenset({"id", "title"})),
        "hint": (frozenset({"order"}), frozenset({"order"})),
        "answer_separator": (frozenset(), frozenset()),
    },
}
_ONLY_PLACEHOLDER = re.compile(r"^\s*\{[A-Za-z_]+\}\s*$")
COMMON = {"system": (frozenset(), frozenset()), "empty_history": (frozenset(), frozenset())}


class TemplateError(RecrankerError):
    """A prompt template that does not fit its task's schema."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Template:
    """A validated template: `pieces` maps each piece name (user, system, hint, ...) to its text."""

    task: Task
    domain: str
    path: str
    pieces: dict[str, str]

    def render(self, piece: str, **values: object) -> str:
        """Piece `piece` with its placeholders filled."""
        return self.pieces[piece].format(**values)

    def render_user(self, **values: object) -> str:
        """The user text filled in; a line holding only a placeholder whose value is empty (a
        switched-off hint) is left out, so it leaves no gap."""
        lines = [
            line for line in self.pieces["user"].split("\n")
            if not (_ONLY_PLACEHOLDER.match(line) and values.get(line.strip()[1:-1]) == "")
        ]
        return "\n".join(lines).format(**values)

    def uses(self, placeholder: str) -> bool:
        """Whether the user text has `placeholder` (e.g. whether it shows a hint)."""
        return placeholder in placeholders(self.pieces["user"])


def placeholders(text: str) -> set[str]:
    """Names of the `{name}` placeholders in `text`."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def load_template(path: str | Path) -> Template:
    """Read and validate one template file."""
    path = Path(path)
    if not path.exists():
        raise TemplateError(path, "template file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TemplateError(path, f"not valid YAML ({getattr(exc, 'problem', exc)})",
                            None if mark is None else mark.line + 1) from None
    if not isinstance(data, dict):
        raise TemplateError(path, "a template must be a mapping of keys")
    task = data.get("task")
    if task not in SCHEMA:
        raise TemplateError(path, f"task must be one of {', '.join(TASKS)}, got {task!r}", lines.get("task"))
    schema = {**COMMON, **SCHEMA[task]}
    for key in data:
        if key not in schema and key not in ("task", "domain", "placeholders"):
            raise TemplateError(path, f"unknown key {key!r} for a {task} template", lines.get(key))
    pieces = {}
    for piece, (allowed, required) in schema.items():
        pieces[piece] = _check_piece(path, data, piece, allowed, required, lines)
    _check_declared(path, data, pieces["user"], lines)
    return Template(task=task, domain=str(data.get("domain", "")), path=str(path), pieces=pieces)


def _check_piece(path: Path, data: dict, piece: str, allowed: frozenset[str], required: frozenset[str],
                 lines: dict[str, int]) -> str:
    if piece not in data:
        raise TemplateError(path, f"missing key {piece!r}")
    value, line = data[piece], lines.get(piece)
    if not isinstance(value, str):
        raise TemplateError(path, f"{piece} must be text, got {type(value).__name__}", line)
    try:
        used = placeholders(value)
    except ValueError as exc:
        raise TemplateError(path, f"{piece}: bad placeholder syntax ({exc}); write a literal brace as {{{{", line) from None
    if used - allowed:
        known = ", ".join(sorted(allowed)) or "none"
        raise TemplateError(path, f"{piece}: unknown placeholder {{{sorted(used - allowed)[0]}}} (allowed: {known})", line)
    if required - used:
        raise TemplateError(path, f"{piece}: missing placeholder {{{sorted(required - used)[0]}}}", line)
    return value


def _check_declared(path: Path, data: dict, user: str, lines: dict[str, int]) -> None:
    declared = data.get("placeholders")
    line = lines.get("placeholders")
    if not isinstance(declared, list) or not all(isinstance(d, str) for d in declared):
        raise TemplateError(path, "placeholders must be a list of the names the user text uses", line)
    used = placeholders(user)
    if set(declared) - used:
        raise TemplateError(path, f"placeholder {{{sorted(set(declared) - used)[0]}}} is declared but the user text does not use it", line)
    if used - set(declared):
        raise TemplateError(path, f"the user text uses {{{sorted(used - set(declared))[0]}}}, which is not declared", lines.get("user"))


def _key_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each top-level key of a YAML mapping."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line + 1 for key, _ in node.value if isinstance(key, yaml.ScalarNode)}


def template_path(task: str, domain: str, directory: str | Path | None = None) -> Path:
    """`<directory>/<domain>/<task>.yaml`; the packaged templates when `directory` is None."""
    if domain not in DOMAINS and directory is None:
        raise TemplateError(f"<templates>/{domain}", f"unknown domain {domain!r}; packaged: {', '.join(DOMAINS)}")
    base = Path(directory) if directory is not None else Path(str(resources.files("recranker.prompts") / "templates"))
    return base / domain / f"{task}.yaml"


def load_templates(domain: str, directory: str | Path | None = None,
                   tasks: tuple[str, ...] = TASKS) -> dict[str, Template]:
    """The templates of `tasks` for `domain` (see `template_path`), validated; the file's task must
    match its name."""
    out = {}
    for task in tasks:
        template = load_template(template_path(task, domain, directory))
        if template.task != task:
            raise TemplateError(template.path, f"file is named for task {task!r} but declares task {template.task!r}")
        out[task] = template
    return out
