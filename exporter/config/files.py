"""Reading the files people write (the config, the web config, secret and certificate files):
regular files only, of a bounded size, UTF-8, and YAML whose work is bounded too.

Every failure is a `ConfigError` with one line per problem that names the file or key and
never echoes the file's content.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

import yaml

from exporter.config.problems import ConfigError, format_path, printable, yaml_problem

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024
# A config of ten thousand pools with labels is about a hundred thousand values; aliases may
# repeat a node, and what they expand to is what every later step walks.
MAX_VALUES = 250_000
MAX_DEPTH = 64
MAX_TEXT = 4 * MAX_CONFIG_BYTES

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class FileProblem(Exception):
    """Why a file could not be read; `str()` fits after the file's name, `about()` after a key."""

    def __init__(self, reason: str, *, unreadable: bool = False) -> None:
        super().__init__(f"cannot read: {reason}" if unreadable else reason)
        self.reason = reason
        self.unreadable = unreadable

    def about(self, path: str) -> str:
        if self.unreadable:
            return f"cannot read {printable(path, 256)}: {self.reason}"
        return f"{printable(path, 256)}: {self.reason}"


def read_regular_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file at `path` (links followed), at most `limit` of them.

    Opened without blocking, so a FIFO is refused instead of waiting for a writer; devices,
    directories and sockets are refused too, and a file over `limit` is refused unread.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except ValueError:
        raise FileProblem("the name holds a NUL character", unreadable=True) from None
    except OSError as error:
        if error.errno == errno.ENXIO:  # a FIFO or socket with no peer
            raise FileProblem("is not a regular file") from None
        raise FileProblem(str(error.strerror), unreadable=True) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise FileProblem(f"is {kind}, not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(descriptor, min(1024 * 1024, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise FileProblem(str(error.strerror), unreadable=True) from None
    finally:
        os.close(descriptor)
    if size > limit:
        raise FileProblem(f"is larger than {_size(limit)}")
    return b"".join(chunks)


def decode_text(data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark dropped); FileProblem at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileProblem(f"not UTF-8 text at byte {error.start}") from None


def read_text_file(path: str, limit: int = MAX_CONFIG_BYTES) -> str:
    return decode_text(read_regular_file(path, limit))


def read_config_text(path: str) -> str:
    """A config file's text; ConfigError naming the file when it cannot be had."""
    try:
        return read_text_file(path)
    except FileProblem as problem:
        raise ConfigError([f"{printable(path, 256)}: {problem}"]) from None


def read_secret(key: str, path: str) -> str:
    """A secret kept in a file (`*_file` keys), stripped; ValueError naming the key."""
    try:
        secret = read_text_file(path, MAX_SECRET_BYTES).strip()
    except FileProblem as problem:
        raise ValueError(f"{key}: {problem.about(path)}") from None
    if not secret:
        raise ValueError(f"{key}: {printable(path, 256)} is empty")
    return secret


def parse_yaml(text: str, source: str) -> object:
    """The document in `text`, or ConfigError. Before anything is built, the parser's events
    are counted and their nesting measured (libyaml's C parser makes this cheap), so a file
    of a million values or ten thousand levels costs a fraction of a second; then the
    composed document is checked for aliases that would expand past MAX_VALUES values or
    MAX_TEXT characters, aliases that refer to themselves, and duplicate keys."""
    where = printable(source, 256)
    loader: _Loader | None = None
    try:
        _check_events(text)
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        expansion = _expansion_problem(node)
        if expansion is not None:
            raise ConfigError([f"{where}: {expansion}"])
        duplicates = _duplicate_keys(node)
        if duplicates:
            raise ConfigError(duplicates)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError([f"{where}: not valid YAML: {yaml_problem(error)}"]) from None
    finally:
        if loader is not None:
            loader.dispose()


# libyaml when PyYAML was built with it (the wheels are), the pure-Python loader otherwise
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader, with a value its tag cannot take (a `!!bool` that is no boolean, an
    integer of ten thousand digits) reported at its line instead of echoed in an error."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a value that {node.tag.rsplit(':', 1)[-1]} cannot hold",
                node.start_mark,
            ) from None


_OPENING = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSING = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_VALUE = (yaml.ScalarEvent, yaml.AliasEvent, *_OPENING)


def _check_events(text: str) -> None:
    depth = values = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, _VALUE):
            values += 1
            if values > MAX_VALUES:
                raise yaml.YAMLError(f"more than {MAX_VALUES:,} values")
        if isinstance(event, _OPENING):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
                raise yaml.YAMLError(f"{at}nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, _CLOSING):
            depth -= 1


def _expansion_problem(root: yaml.Node) -> str | None:
    """What the composed document would be once its aliases are expanded, checked without
    expanding them: every node is visited once, its expanded size, text and depth remembered."""
    size: dict[int, int] = {}
    text: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            text[key] = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
            text[key] += sum(text[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_VALUES:
                return f"line {_line(node)}: aliases expand to more than {MAX_VALUES:,} values"
            if text[key] > MAX_TEXT:
                return f"line {_line(node)}: aliases expand to more than {_size(MAX_TEXT)} of text"
            if depth[key] > MAX_DEPTH:
                return f"line {_line(node)}: aliases nest deeper than {MAX_DEPTH} levels"
            continue
        if key in size:
            continue
        if key in on_path:
            return f"line {_line(node)}: an alias refers to itself"
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    return None


def text_problems(value: object, path: tuple[str | int, ...] = ()) -> list[str]:
    """Keys and values that no later step may meet: text that is not valid Unicode (a lone
    surrogate, from a `\\uD800` escape or an environment variable's stray byte) and binary
    values (`!!binary`)."""
    problems: list[str] = []
    stack: list[tuple[object, tuple[str | int, ...]]] = [(value, path)]
    seen: set[int] = set()
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict | list):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, str) and not _is_unicode(item):
            problems.append(f"{format_path(where)}: not valid Unicode text")
        elif isinstance(item, bytes | bytearray):
            problems.append(f"{format_path(where)}: binary values are not allowed")
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, bytes | bytearray) or (
                    isinstance(key, str) and not _is_unicode(key)
                ):
                    problems.append(f"{format_path(where)}: a key that is not text")
                    continue
                stack.append((child, (*where, key if isinstance(key, str | int) else str(key))))
        elif isinstance(item, list):
            stack.extend((child, (*where, index)) for index, child in enumerate(item))
    return sorted(set(problems))


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _duplicate_keys(root: yaml.Node) -> list[str]:
    """Keys given twice in one mapping, with their path and lines (merge keys excepted: a
    mapping may override what it merges)."""
    problems: list[tuple[int, str]] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, index)) for index, child in enumerate(node.value))
            continue
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            identity = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            key_path = format_path((*path, _key_text(key_node)), key=True)
            if identity in first_line:
                problems.append(
                    (
                        line,
                        f"{key_path}: duplicate key at line {line} (first at line "
                        f"{first_line[identity]})",
                    )
                )
            else:
                first_line[identity] = line
            stack.append((value_node, (*path, _key_text(key_node))))
    return [message for _, message in sorted(problems)]


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _key_text(node: yaml.ScalarNode) -> str:
    return str(node.value)[:64]


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"
