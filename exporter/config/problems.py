"""Problems in the YAML files people write (the config and the web config): one error type,
each problem one line, prefixed with the path of the value at fault, never echoing the value."""

from __future__ import annotations

import yaml
from pydantic import ValidationError


class ConfigError(Exception):
    """Every problem found in a configuration file, one line each: whatever a problem quotes
    of the file, it cannot break its line or forge another."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [printable(problem, 2000) for problem in problems]
        super().__init__("\n".join(self.problems))


def yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.reader.ReaderError):
        return f"character {error.position}: a control character YAML does not allow"
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or (
        str(error) if type(error) is yaml.YAMLError else "syntax error"
    )
    problem = printable(str(problem), 200)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return problem


_TYPE_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "list_type": "expected a list",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
}


def describe_validation_errors(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        location = item["loc"]
        if item["type"] == "invalid_key" or (location and location[-1] == "[key]"):
            key_path = location if item["type"] == "invalid_key" else location[:-1]
            problems.append(f"{format_path(key_path, key=True)}: keys must be strings")
            continue
        message = _TYPE_MESSAGES.get(item["type"]) or str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{format_path(location)}: {message}")
    return problems


def format_path(location: tuple[int | str, ...], *, key: bool = False) -> str:
    """`a.b[0]`; with `key`, the last part is a mapping key even when it is a number."""
    text = ""
    for index, part in enumerate(location):
        if isinstance(part, int) and not (key and index == len(location) - 1):
            text += f"[{part}]"
        else:
            name = printable(str(part))
            text += f".{name}" if text else name
    return text or "(top level)"


def printable(text: str, limit: int = 64) -> str:
    """`text` cut to `limit` characters, with anything unprintable escaped, so that what a
    file holds can never break a message's line or forge another."""
    text = text[:limit]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def quoted(text: str) -> str:
    return f'"{printable(text)}"'
