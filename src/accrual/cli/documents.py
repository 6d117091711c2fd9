"""YAML documents (catalog and scenario files) read exactly, with the line of every value.

Numbers are read as exact decimals (a YAML float like `0.05` becomes `Decimal("0.05")`, never a
binary float); timestamps stay the text they were written as, for the domain to parse;
duplicate keys are refused. Every value's line is remembered by its JSON pointer, so an error
the services report for `/catalog/plans/0/charges/1/amount` is shown as `file.yaml:14`.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"


class DocumentError(ValueError):
    """The file cannot be read as a document: it says which file and line."""


@dataclasses.dataclass(frozen=True)
class Document:
    path: Path
    data: Any
    lines: dict[str, int]

    def line_of(self, pointer: str) -> int | None:
        """The line of the value at `pointer`, or of its nearest ancestor present in the file."""
        while True:
            if pointer in self.lines:
                return self.lines[pointer]
            if not pointer:
                return None
            pointer = pointer.rsplit("/", 1)[0]

    def where(self, pointer: str | None) -> str:
        """`file:line` for a pointer (the file alone when there is none)."""
        line = self.line_of(pointer) if pointer is not None else None
        return f"{self.path}:{line}" if line is not None else str(self.path)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _scalar(node: yaml.ScalarNode, loader: yaml.SafeLoader) -> Any:
    if node.tag == _FLOAT:
        text = node.value.replace("_", "")
        if text.lower().lstrip("+-") in (".inf", ".nan"):
            raise DocumentError(f"line {node.start_mark.line + 1}: {node.value!r} is not a finite number")
        return Decimal(text)
    if node.tag in (_INT, _BOOL, _NULL):
        return loader.construct_object(node)
    # Strings, and timestamps kept as written: the domain parses instants itself, strictly.
    return node.value


def _build(node: yaml.Node, pointer: str, lines: dict[str, int], loader: yaml.SafeLoader) -> Any:
    lines[pointer] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, loader)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, f"{pointer}/{i}", lines, loader) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise DocumentError(f"line {key_node.start_mark.line + 1}: keys must be plain names")
            key = str(key_node.value)
            if key in result:
                raise DocumentError(
                    f"line {key_node.start_mark.line + 1}: {key!r} appears twice in the same mapping"
                )
            child = f"{pointer}/{_escape(key)}"
            result[key] = _build(value_node, child, lines, loader)
            # An error about a key points at the key's line, whatever shape its value has.
            lines[child] = key_node.start_mark.line + 1
        return result
    raise DocumentError(f"line {node.start_mark.line + 1}: unsupported YAML node")


def load(path: Path) -> Document:
    """Read `path` as one YAML document; raise `DocumentError` naming the file and line on failure."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DocumentError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DocumentError(f"{path}: is not UTF-8 text") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        data = _build(node, "", lines, loader) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DocumentError(f"{path}{line}: {exc.problem or exc.context}") from None
    except DocumentError as exc:
        raise DocumentError(f"{path}: {exc}") from None
    finally:
        loader.dispose()
    return Document(path=path, data=data, lines=lines)
