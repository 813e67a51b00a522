"""The tool-description extractor, on a tiny wheel built here: each declaration style real
packages use is found, nothing is imported or run, and the corpus is deduplicated."""

import zipfile
from pathlib import Path

import pytest

from detectors.build.tool_corpus import TOOL_WHEELS, extract, load_tool_corpus, read_wheel, requirements

LANGCHAIN_STYLE = """
from langchain_core.tools import BaseTool

class SearchTool(BaseTool):
    name: str = "web_search"
    description: str = (
        "Search the web for a query. "
        "Returns the top results."
    )

class Calculator(BaseTool):
    description = "Evaluates " + "arithmetic expressions."

class NotATool:
    description = "A class with a description but no tool base and no name."
"""
SMOLAGENTS_STYLE = '''
class WeatherTool(Tool):
    name = "weather"
    description = """Gets the weather for a city, in Celsius."""
    inputs = {"city": {"type": "string", "description": "The city"}}
'''
MCP_LOWLEVEL = """
from mcp.types import Tool
FETCH_DESCRIPTION = "Fetches a URL and returns its text as markdown."

def list_tools():
    return [
        types.Tool(name="fetch", description=FETCH_DESCRIPTION, inputSchema={"type": "object", "properties": {}}),
        Tool(name=GitTools.STATUS.value, description="Shows the working tree status", inputSchema=Model.schema()),
        Tool(name="computed", description=f"Not constant {x}"),
    ]
"""
FASTMCP = '''
@mcp.tool()
async def read_query(query: str) -> str:
    """Execute a SELECT query on the SQLite database."""

@server.tool(name="send_mail", description="Send an e-mail to one recipient.")
def send(to: str) -> None:
    """A docstring the keyword overrides."""

@tool
def lookup(term: str) -> str:
    """Look up a term in the glossary and return its definition."""

def registered(self) -> None:
    """Returns the alarms currently firing in the account."""

def setup(mcp):
    mcp.tool(name="get_alarms")(registered)

def helper() -> None:
    """Not a tool: not decorated, not registered."""
'''
LLAMA_SPEC = '''
class SlackToolSpec(BaseToolSpec):
    spec_functions = ["send_message"]

    def send_message(self, channel_id: str, message: str) -> None:
        """Send a message to a channel given the channel ID."""

    def _private(self) -> None:
        """Not listed in spec_functions."""
'''
EXPLODES = (
    'raise SystemExit("package code must never run")\n'
    'class T(Tool):\n    name = "t"\n    description = "Parsed, not executed."\n'
)


def _by_name(source: str) -> dict[str, object]:
    return {r.name: r for r in extract(source, "pkg", "pkg/mod.py")}


def test_class_attributes_with_concatenation_and_schema_literals():
    found = _by_name(LANGCHAIN_STYLE)
    assert found["web_search"].description == "Search the web for a query. Returns the top results."
    assert found["Calculator"].description == "Evaluates arithmetic expressions."  # base ends in Tool, no name
    assert all("no tool base" not in r.description for r in found.values())
    weather = _by_name(SMOLAGENTS_STYLE)["weather"]
    assert weather.parameters == {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city"}},
    }


def test_tool_calls_resolve_module_constants_and_enum_names_and_skip_computed_text():
    found = _by_name(MCP_LOWLEVEL)
    assert found["fetch"].description == "Fetches a URL and returns its text as markdown."
    assert found["fetch"].parameters == {"type": "object", "properties": {}}
    assert found["status"].description == "Shows the working tree status" and found["status"].parameters is None
    assert "computed" not in found


def test_decorated_and_registered_functions_use_the_keyword_or_the_docstring():
    found = _by_name(FASTMCP)
    assert found["read_query"].description == "Execute a SELECT query on the SQLite database."
    assert found["send_mail"].description == "Send an e-mail to one recipient."
    assert found["lookup"].description.startswith("Look up a term")
    assert found["get_alarms"].description == "Returns the alarms currently firing in the account."
    assert "helper" not in found


def test_llamaindex_spec_functions_are_tools():
    found = _by_name(LLAMA_SPEC)
    assert set(found) == {"send_message"}


def test_source_is_parsed_never_executed_and_broken_files_are_skipped():
    assert _by_name(EXPLODES)["t"].description == "Parsed, not executed."
    assert extract("def broken(:\n", "pkg", "pkg/bad.py") == []


def _wheel(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_a_wheel_is_read_without_its_tests_and_the_corpus_is_deduplicated(tmp_path):
    files = {
        "pkg/tools.py": LANGCHAIN_STYLE + FASTMCP,
        "pkg/copy.py": SMOLAGENTS_STYLE + SMOLAGENTS_STYLE.replace("WeatherTool", "WeatherTool2"),
        "pkg/tests/test_tools.py": 'class T(Tool):\n    name = "test_only"\n    description = "Only in the tests."\n',
        "pkg/data.json": "{}",
    }
    wheel = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", files)
    names = [r.name for r in read_wheel(wheel, "pkg")]
    assert "test_only" not in names and names.count("weather") == 2

    package, version = "mcp-server-time", TOOL_WHEELS["mcp-server-time"]
    _wheel(tmp_path / f"mcp_server_time-{version}-py3-none-any.whl", files)
    corpus = load_tool_corpus(tmp_path, packages={package: version})
    descriptions = [r.description for r in corpus]
    assert len(descriptions) == len(set(descriptions))  # the two weather tools are one description
    assert {r.package for r in corpus} == {package} and all(r.module.startswith("pkg/") for r in corpus)


def test_a_missing_wheel_says_what_to_run(tmp_path):
    with pytest.raises(RuntimeError, match="make setup"):
        load_tool_corpus(tmp_path)


def test_requirements_are_pinned():
    lines = requirements()
    assert len(lines) == len(TOOL_WHEELS) >= 10 and all("==" in line for line in lines)
