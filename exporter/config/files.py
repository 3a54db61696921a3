"""Reading the files people write (the config, the web config, secret and certificate files):
regular files only, of a bounded size, UTF-8, and YAML whose work is bounded too.

Every failure is a `ConfigError` with one line per problem that names the file or key and
never echoes the file's content.
"""

from __future__ import annotations

import errno
import os
import stat

import yaml

from exporter.config.problems import ConfigError, format_path, printable, yaml_problem

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024
# A config of ten thousand pools with labels is about a hundred thousand values; aliases may
# repeat a node, and what they expand to is what every later step walks.
MAX_VALUES = 250_000
MAX_DEPTH = 64

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

    def __init__(self, reason: str, unreadable: bool = False) -> None:
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
        return read_text_file(path, MAX_SECRET_BYTES).strip()
    except FileProblem as problem:
        raise ValueError(f"{key}: {problem.about(path)}") from None


def parse_yaml(text: str, source: str) -> object:
    """The document in `text`, or ConfigError: syntax, duplicate keys, aliases that expand
    past MAX_VALUES, nesting past MAX_DEPTH, and recursive aliases are all refused."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        expansion = _expansion_problem(node)
        if expansion is not None:
            raise ConfigError([f"{printable(source, 256)}: {expansion}"])
        duplicates = _duplicate_keys(node)
        if duplicates:
            raise ConfigError(duplicates)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError(
            [f"{printable(source, 256)}: not valid YAML: {yaml_problem(error)}"]
        ) from None
    except (ValueError, TypeError, OverflowError) as error:
        # PyYAML's own constructors raise these for values such as a timestamp out of range
        raise ConfigError(
            [f"{printable(source, 256)}: not valid YAML: {type(error).__name__}"]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str) -> object:
    return parse_yaml(read_config_text(path), source=path)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with its recursive composer held to MAX_DEPTH levels."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                message = f"nested deeper than {MAX_DEPTH} levels"
                raise yaml.composer.ComposerError(None, None, message, mark)
            node: yaml.Node | None = super().compose_node(parent, index)
            return node
        finally:
            self._depth -= 1


def _expansion_problem(root: yaml.Node) -> str | None:
    """What the composed document would be once its aliases are expanded, checked without
    expanding them: every node is visited once, its expanded size and depth remembered."""
    size: dict[int, int] = {}
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
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_VALUES:
                return f"line {_line(node)}: aliases expand to more than {MAX_VALUES:,} values"
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
