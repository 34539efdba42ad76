"""The emulator serves the reference API exactly: paths, methods, parameters, required fields.

The reference (`tests/data/openapi-reference.md`, a copy of the API documentation) is parsed
here, independently of the emulator's code, and compared with the emulator's OpenAPI document.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from teleport_sync.emulator.server import EmulatorServer

REFERENCE = Path(__file__).parent / "data" / "openapi-reference.md"
OPERATION = re.compile(r"^(GET|POST|PUT|DELETE|PATCH) (/\S+)#$")


def _json_after(lines: list[str], start: int) -> dict[str, Any]:
    """The JSON object that begins on the first line after `start` starting with `{`."""
    i = start
    while not lines[i].startswith("{"):
        i += 1
    depth, chunk = 0, []
    for line in lines[i:]:
        chunk.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0:
            break
    return json.loads("\n".join(chunk))


def parse_reference() -> dict[tuple[str, str], dict[str, Any]]:
    lines = REFERENCE.read_text().splitlines()
    operations: dict[tuple[str, str], dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for i, line in enumerate(lines):
        match = OPERATION.match(line.strip())
        if match:
            current = {"params": set(), "body": None, "response": None}
            operations[(match.group(1), match.group(2))] = current
            continue
        if line.strip() == "Schemas#":
            break
        if current is None:
            continue
        if line.startswith("Parameter In Type"):
            j = i + 1
            while lines[j].strip():
                name, where = lines[j].split()[:2]
                current["params"].add((name, where))
                j += 1
        elif line.startswith("Schema of the request body"):
            current["body"] = _json_after(lines, i + 1)
        elif line.startswith("Schema of the response body") and current["response"] is None:
            current["response"] = _json_after(lines, i + 1)
    return operations


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return spec["components"]["schemas"][name]
    return schema


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with EmulatorServer() as server:
        return server.app.openapi()


REFERENCE_OPERATIONS = parse_reference()


def test_reference_parsed() -> None:
    assert len(REFERENCE_OPERATIONS) == 7


def test_same_paths_and_methods(spec: dict[str, Any]) -> None:
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == set(REFERENCE_OPERATIONS)


@pytest.mark.parametrize(("method", "path"), sorted(REFERENCE_OPERATIONS))
def test_same_parameters(spec: dict[str, Any], method: str, path: str) -> None:
    operation = spec["paths"][path][method.lower()]
    served = {(p["name"], p["in"]) for p in operation.get("parameters", [])}
    assert served == REFERENCE_OPERATIONS[(method, path)]["params"]


@pytest.mark.parametrize(("method", "path"), sorted(REFERENCE_OPERATIONS))
def test_same_request_body_required_fields(spec: dict[str, Any], method: str, path: str) -> None:
    expected = REFERENCE_OPERATIONS[(method, path)]["body"]
    operation = spec["paths"][path][method.lower()]
    if expected is None:
        assert "requestBody" not in operation
        return
    schema = _resolve(spec, operation["requestBody"]["content"]["application/json"]["schema"])
    assert schema["title"] == expected["title"]
    assert sorted(schema.get("required", [])) == sorted(expected["required"])
    assert set(schema["properties"]) == set(expected["properties"])


@pytest.mark.parametrize(("method", "path"), sorted(REFERENCE_OPERATIONS))
def test_same_response_required_fields(spec: dict[str, Any], method: str, path: str) -> None:
    expected = REFERENCE_OPERATIONS[(method, path)]["response"]
    responses = spec["paths"][path][method.lower()]["responses"]
    assert "422" in responses  # every operation documents its validation error
    if expected is None or expected.get("title") == "HTTPValidationError":
        assert "204" in responses
        return
    schema = responses["200"]["content"]["application/json"]["schema"]
    if expected.get("type") == "array":
        assert schema["type"] == "array"
        schema, expected = schema["items"], {"$ref": expected["items"]["$ref"]}
        name = expected["$ref"].rsplit("/", 1)[1]
        assert _resolve(spec, schema)["title"] == name
        return
    resolved = _resolve(spec, schema)
    assert resolved["title"] == expected["title"]
    assert sorted(resolved.get("required", [])) == sorted(expected["required"])
    assert set(resolved["properties"]) == set(expected["properties"])
