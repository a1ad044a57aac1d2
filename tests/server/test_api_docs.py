#!/usr/bin/env python3
"""The API description matches the daemon's route table: every route of server/routes.c is
in schema/openapi.yaml and docs/api.md, and openapi.yaml lists no route the daemon lacks."""

import glob
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402


def source(*parts):
    with open(os.path.join(regtest.SOURCE_DIR, *parts)) as f:
        return f.read()


def normalise(path):
    return re.sub(r"\{[^}]*\}", "{}", path)


def daemon_routes():
    routes = set()
    for method, path in re.findall(r'\{ "([A-Z]+)", "(/[^"]*)"', source("server", "routes.c")):
        routes.add((method.lower(), normalise(path)))
    return routes


def openapi_routes():
    routes, path = set(), None
    for line in source("schema", "openapi.yaml").splitlines():
        match = re.match(r"^  (/\S*):$", line)
        if match:
            path = normalise(match.group(1))
            continue
        match = re.match(r"^    (get|put|post|patch|delete|head):", line)
        if match and path:
            routes.add((match.group(1), path))
        if re.match(r"^\S", line):
            path = None
    return routes


class ApiDocsTest(unittest.TestCase):
    def test_openapi_matches_routes(self):
        self.assertEqual(openapi_routes(), daemon_routes())

    def test_api_md_names_every_route(self):
        text = normalise(source("docs", "api.md"))
        for method, path in sorted(daemon_routes()):
            with self.subTest(route=path):
                self.assertIn(path, text)

    def test_json_schemas_parse(self):
        files = glob.glob(os.path.join(regtest.SOURCE_DIR, "schema", "api", "*.json"))
        self.assertGreaterEqual(len(files), 5)
        for path in files:
            with self.subTest(schema=os.path.basename(path)):
                with open(path) as f:
                    schema = json.load(f)
                self.assertIn("$id", schema)


if __name__ == "__main__":
    unittest.main(verbosity=2)
