#!/usr/bin/env python3
"""Website routes of ucregd: page names without .html, /packs/SLUG for packs in the catalog,
the 404 page for everything else, and the Content-Security-Policy on every response."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402

CSP = ("default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none';"
       " form-action 'self'")
PAGES = {
    "index.html": b"<h1>catalog</h1>",
    "stats.html": b"<h1>stats</h1>",
    "pack.html": b"<h1>pack</h1>",
    "404.html": b"<h1>not found</h1>",
    ".secret.html": b"hidden",
    "css/site.css": b"body {}",
}


def write_site(root, pages):
    for name, body in pages.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)


class StaticRoutesTest(regtest.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.site = tempfile.mkdtemp(prefix="ucregd-site-")
        write_site(cls.site, PAGES)
        cls.daemon_args = ("--static-dir", cls.site)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.site, ignore_errors=True)

    def publish(self, slug):
        scratch = tempfile.mkdtemp(prefix="ucregd-pack-")
        self.addCleanup(shutil.rmtree, scratch, True)
        manifest, shards = regtest.make_pack(os.path.join(scratch, "pack"))
        for digest, data in shards.items():
            self.daemon.put_blob(data, self.token, digest)
        response = self.daemon.request("PUT", "/api/packs/%s/versions/1.0" % slug, manifest,
                                       token=self.token)
        self.assertEqual(response.status, 202, response.body)

    def assertPage(self, path, status, body):
        response = self.daemon.request("GET", path)
        self.assertEqual(response.status, status, path)
        self.assertEqual(response.body, body, path)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8", path)
        self.assertEqual(response.header("content-security-policy"), CSP, path)
        return response

    def test_root_serves_index(self):
        self.assertPage("/", 200, PAGES["index.html"])

    def test_page_name_without_extension(self):
        self.assertPage("/stats", 200, PAGES["stats.html"])
        self.assertPage("/stats.html", 200, PAGES["stats.html"])

    def test_known_pack_serves_pack_page(self):
        self.publish("stories-260k")
        self.assertPage("/packs/stories-260k", 200, PAGES["pack.html"])

    def test_unknown_pack_serves_404_page(self):
        self.publish("stories-260k")
        self.assertPage("/packs/no-such-pack", 404, PAGES["404.html"])
        self.assertPage("/packs/Not_A_Slug", 404, PAGES["404.html"])
        self.assertPage("/packs/stories-260k/extra", 404, PAGES["404.html"])

    def test_unknown_path_serves_404_page(self):
        self.assertPage("/no-such-page", 404, PAGES["404.html"])
        self.assertPage("/css/missing.css", 404, PAGES["404.html"])
        self.assertPage("/.secret", 404, PAGES["404.html"])
        self.assertPage("/.secret.html", 404, PAGES["404.html"])

    def test_head_sends_no_body(self):
        response = self.daemon.request("HEAD", "/stats")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.header("content-length"), str(len(PAGES["stats.html"])))

    def test_api_responses_carry_csp(self):
        for path, status in (("/api/packs", 200), ("/api/packs/no-such-pack", 404),
                             ("/healthz", 200)):
            response = self.daemon.request("GET", path)
            self.assertEqual(response.status, status, path)
            self.assertEqual(response.header("content-security-policy"), CSP, path)


class StaticWithout404PageTest(regtest.DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.site = tempfile.mkdtemp(prefix="ucregd-site-")
        write_site(cls.site, {"index.html": PAGES["index.html"]})
        cls.daemon_args = ("--static-dir", cls.site)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.site, ignore_errors=True)

    def test_unknown_path_gets_problem(self):
        response = self.daemon.request("GET", "/no-such-page")
        self.assertProblem(response, 404, "not_found")
        self.assertEqual(response.header("content-security-policy"), CSP)


if __name__ == "__main__":
    regtest.main()
