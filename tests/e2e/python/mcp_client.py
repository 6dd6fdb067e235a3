"""An outside MCP client for `gnn-coder mcp` (tests/e2e/mcp.rs): the official Python SDK.

Usage:
    mcp_client.py stdio REPO_ROOT BIN ARGS...    (starts `BIN ARGS...` in REPO_ROOT)
    mcp_client.py http REPO_ROOT URL TOKEN

It lists the tools, indexes REPO_ROOT through the server (asking for progress), calls every
tool with good and bad arguments, and prints one JSON object of what it saw; any surprise is
an assertion error (exit status 1). The Rust test checks the JSON.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError as McpError

TOOLS = {"search_code", "find_similar", "index_repository", "refresh", "index_status"}


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def exercise(session, root):
    seen = {}
    await session.initialize()
    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    assert TOOLS <= names, names
    for t in tools:
        assert t.description and len(t.description) > 40, t
        schema = t.input_schema if hasattr(t, "input_schema") else t.inputSchema
        assert schema.get("type") == "object", schema
    search = next(t for t in tools if t.name == "search_code")
    schema = search.input_schema if hasattr(search, "input_schema") else search.inputSchema
    assert "query" in schema.get("required", []), schema
    seen["tools"] = sorted(names)

    progress = []

    async def on_progress(value, total, message):
        progress.append(message)

    r = await session.call_tool("index_repository", {"path": root}, progress_callback=on_progress)
    assert not r.is_error if hasattr(r, "is_error") else not r.isError, text_of(r)
    seen["indexed"] = text_of(r)
    seen["progress"] = len(progress)

    def is_error(r):
        return r.is_error if hasattr(r, "is_error") else r.isError

    q = "compute the levenshtein edit distance between two strings"
    r = await session.call_tool("search_code", {"query": q})
    assert not is_error(r), text_of(r)
    seen["search"] = text_of(r)

    r = await session.call_tool("search_code", {"query": q, "limit": 1, "language": "python"})
    first = text_of(r)
    assert not is_error(r) and "cursor" in first, first
    cursor = first.split('cursor "')[1].split('"')[0]
    r = await session.call_tool("search_code", {"query": q, "limit": 1, "language": "python", "cursor": cursor})
    assert not is_error(r), text_of(r)
    seen["page1"] = first
    seen["page2"] = text_of(r)

    # The cross-encoder's correction of the top 20: the same answer, first.
    r = await session.call_tool("search_code", {"query": q, "rerank": True, "limit": 3})
    assert not is_error(r) and "levenshtein" in text_of(r)[:300], text_of(r)
    seen["reranked"] = text_of(r)

    r = await session.call_tool("search_code", {"query": q, "max_tokens": 1})
    seen["tiny_budget"] = text_of(r)

    errors = {}
    for name, args in [
        ("empty_query", ("search_code", {"query": "   "})),
        ("unknown_repository", ("search_code", {"query": "sort", "repository": "nope"})),
        ("bad_mode", ("search_code", {"query": "sort", "mode": "telepathic"})),
        ("bad_limit", ("search_code", {"query": "sort", "limit": 500})),
        ("bad_cursor", ("search_code", {"query": "sort", "cursor": "x"})),
        ("outside_root", ("index_repository", {"path": "/etc"})),
        ("missing_dir", ("index_repository", {"path": os.path.join(root, "no-such-dir")})),
        ("similar_nothing", ("find_similar", {})),
        ("similar_no_unit", ("find_similar", {"path": "python/text_utils.py", "line": 99999})),
        ("refresh_unknown", ("refresh", {"repository": "nope"})),
    ]:
        tool, arguments = args
        r = await session.call_tool(tool, arguments)
        assert is_error(r), (name, text_of(r))
        errors[name] = text_of(r)
    seen["errors"] = errors

    # Protocol errors: the session goes on.
    protocol = {}
    for name, (tool, arguments) in {
        "unknown_tool": ("no_such_tool", {}),
        "wrong_type": ("search_code", {"query": 5}),
    }.items():
        try:
            r = await session.call_tool(tool, arguments)
            protocol[name] = "tool error: " + text_of(r) if is_error(r) else "accepted"
        except McpError as e:
            protocol[name] = "json-rpc error: " + str(e)
    seen["protocol"] = protocol

    with open(os.path.join(root, "python", "text_utils.py")) as f:
        lines = f.read().splitlines()
    line = next(i + 1 for i, l in enumerate(lines) if l.startswith("def levenshtein_distance("))
    r = await session.call_tool("find_similar", {"path": "python/text_utils.py", "line": line, "limit": 3})
    assert not is_error(r), text_of(r)
    seen["similar_unit"] = text_of(r)
    absolute = os.path.join(root, "python", "text_utils.py")
    r = await session.call_tool("find_similar", {"path": absolute, "line": line, "limit": 3})
    assert not is_error(r), text_of(r)
    seen["similar_absolute"] = text_of(r)
    snippet = "\n".join(lines[line - 1 : line + 12])
    r = await session.call_tool("find_similar", {"code": snippet, "language": "python", "limit": 3})
    assert not is_error(r), text_of(r)
    seen["similar_snippet"] = text_of(r)

    # An edit on disk, then refresh: the new function is found.
    with open(os.path.join(root, "python", "fresh.py"), "w") as f:
        f.write("def zebra_quaternion_frobnicator(q):\n    return q * 2\n")
    r = await session.call_tool("refresh", {})
    assert not is_error(r), text_of(r)
    seen["refresh"] = text_of(r)
    r = await session.call_tool("search_code", {"query": "zebra_quaternion_frobnicator", "mode": "lexical"})
    assert not is_error(r), text_of(r)
    seen["after_refresh"] = text_of(r)

    r = await session.call_tool("index_status", {})
    assert not is_error(r), text_of(r)
    seen["status"] = text_of(r)
    return seen


async def main():
    mode, root = sys.argv[1], sys.argv[2]
    if mode == "stdio":
        binary, args = sys.argv[3], sys.argv[4:]
        params = StdioServerParameters(command=binary, args=args, cwd=root)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                seen = await exercise(session, root)
    else:
        url, token = sys.argv[3], sys.argv[4]
        import httpx2

        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as session:
                    seen = await exercise(session, root)
    print(json.dumps(seen))


asyncio.run(main())
