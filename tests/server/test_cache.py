#!/usr/bin/env python3
"""Response cache of the catalog documents: every kind of write is seen by the next read,
ETags and If-None-Match, and the entry limit."""

import http.client
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import wait_for_job  # noqa: E402
from test_evaluations import record  # noqa: E402
from test_packs import PackTest  # noqa: E402

PACK = "/api/packs/stories"
VERSION = "/api/packs/stories/versions/1.0"
CACHE_MAX_ENTRIES = 4096  # REG_CACHE_MAX_ENTRIES in server/cache.h


class CacheTest(PackTest):
    def get(self, path, headers=None):
        response = self.daemon.request("GET", path, headers=headers)
        self.assertEqual(response.status, 200, response.body)
        return response

    def metrics(self):
        text = self.daemon.request("GET", "/metrics").body.decode()
        return {m.group(1): float(m.group(2))
                for m in re.finditer(r"^(ucreg_cache_\w+) (\S+)$", text, re.M)}

    def test_repeat_read_is_hit(self):
        """Both reads go over one keep-alive connection, so one HTTP thread serves them:
        after a write, each thread drops the cache once more when its own connection
        notices the write."""
        self.publish()
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=30)
        self.addCleanup(conn.close)
        conn.request("GET", PACK)
        first = conn.getresponse()
        first_body = first.read()
        before = self.metrics()
        conn.request("GET", PACK)
        second = conn.getresponse()
        second_body = second.read()
        after = self.metrics()
        self.assertEqual(second.status, 200)
        self.assertEqual(second_body, first_body)
        self.assertEqual(second.getheader("etag"), first.getheader("etag"))
        self.assertEqual(second.getheader("cache-control"), "no-cache")
        self.assertEqual(after["ucreg_cache_hits_total"], before["ucreg_cache_hits_total"] + 1)

    def test_publish_seen(self):
        listing = self.get("/api/packs").json()
        self.assertEqual(listing["packs"], [])
        changes = self.get("/api/changes").json()["changes"]
        self.assertEqual(self.daemon.request("GET", PACK).status, 404)

        self.publish()
        listing = self.get("/api/packs").json()
        self.assertEqual([p["slug"] for p in listing["packs"]], ["stories"])
        self.assertGreater(len(self.get("/api/changes").json()["changes"]), len(changes))
        self.assertEqual(self.get(PACK).json()["latest"]["version"], "1.0")

    def test_verify_seen(self):
        """The read right after the PUT usually finds the version pending and caches it,
        though the worker may finish first. Either way the read after the job shows the
        version verified."""
        self.upload_shards()
        response = self.put_version("stories", "1.0")
        self.assertEqual(response.status, 202, response.body)
        early = self.get(VERSION)
        self.assertIn(early.json()["status"], ("pending", "verified"))
        self.assertEqual(wait_for_job(self.daemon, response.json()["job"])["state"], "done")
        late = self.get(VERSION).json()
        self.assertEqual(late["status"], "verified")
        self.assertEqual(late["verify_report"]["verdict"], "ok")
        self.assertEqual(self.get(PACK).json()["latest"]["status"], "verified")

    def test_evaluation_seen(self):
        self.publish()
        before = self.get(PACK)
        self.assertEqual(before.json()["latest"]["evaluations"], [])
        response = self.daemon.request("POST", VERSION + "/evaluations",
                                       body=json.dumps(record()).encode(), token=self.token)
        self.assertEqual(response.status, 201, response.body)
        after = self.get(PACK)
        self.assertEqual(len(after.json()["latest"]["evaluations"]), 1)
        self.assertNotEqual(after.header("etag"), before.header("etag"))

    def test_yank_seen(self):
        self.publish()
        self.assertFalse(self.get(VERSION).json()["yanked"])
        self.assertIsNotNone(self.get(PACK).json()["latest"])
        response = self.daemon.request("POST", VERSION + "/yank",
                                       body=json.dumps({"reason": "bad weights"}).encode(),
                                       token=self.token)
        self.assertEqual(response.status, 200, response.body)
        version = self.get(VERSION).json()
        self.assertTrue(version["yanked"])
        self.assertEqual(version["yank_reason"], "bad weights")
        self.assertIsNone(self.get(PACK).json()["latest"])

    def test_delete_seen(self):
        self.publish()
        self.assertEqual(len(self.get(PACK + "/versions").json()["versions"]), 1)
        self.get(VERSION)
        response = self.daemon.request("DELETE", VERSION, token=self.admin_token)
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(self.get(PACK + "/versions").json()["versions"], [])
        self.assertProblem(self.daemon.request("GET", VERSION), 404, "version_not_found")

    def test_write_by_other_process_seen(self):
        self.publish()
        self.assertIsNone(self.get(VERSION).json()["status_reason"])
        db = self.daemon.catalog()
        try:
            db.execute("UPDATE versions SET status_reason = 'edited by hand'")
            db.commit()
        finally:
            db.close()
        self.assertEqual(self.get(VERSION).json()["status_reason"], "edited by hand")

    def test_if_none_match_304(self):
        self.publish()
        etag = self.get(PACK).header("etag")
        self.assertRegex(etag, r'^"[0-9a-f]{32}"$')
        for value in (etag, "W/" + etag, '"other", ' + etag, "*"):
            with self.subTest(if_none_match=value):
                response = self.daemon.request("GET", PACK, headers={"If-None-Match": value})
                self.assertEqual(response.status, 304)
                self.assertEqual(response.body, b"")
                self.assertEqual(response.header("etag"), etag)
        for value in ('"other"', etag.strip('"'), "W/"):
            with self.subTest(if_none_match=value):
                response = self.get(PACK, headers={"If-None-Match": value})
                self.assertEqual(response.header("etag"), etag)

    def test_old_etag_after_write_200(self):
        self.publish()
        etag = self.get(PACK).header("etag")
        response = self.daemon.request("POST", VERSION + "/yank",
                                       body=json.dumps({"reason": "old"}).encode(),
                                       token=self.token)
        self.assertEqual(response.status, 200, response.body)
        fresh = self.get(PACK, headers={"If-None-Match": etag})
        self.assertNotEqual(fresh.header("etag"), etag)
        self.assertIsNone(fresh.json()["latest"])

    def test_head_has_etag_no_body(self):
        self.publish()
        etag = self.get(PACK).header("etag")
        response = self.daemon.request("HEAD", PACK)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.header("etag"), etag)

    def test_query_is_part_of_key(self):
        self.publish()
        self.publish("tales", "1.0")
        self.assertEqual(len(self.get("/api/packs").json()["packs"]), 2)
        self.assertEqual(len(self.get("/api/packs?limit=1").json()["packs"]), 1)
        self.assertEqual(len(self.get("/api/packs").json()["packs"]), 2)

    def test_entry_limit_kept(self):
        """Fills more distinct keys than the cache may hold, over one keep-alive
        connection, and checks that the entry count stays at the limit."""
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=30)
        self.addCleanup(conn.close)

        def get_changes(since):
            conn.request("GET", "/api/changes?since=%d" % since)
            response = conn.getresponse()
            response.read()
            self.assertEqual(response.status, 200)

        for since in range(CACHE_MAX_ENTRIES + 100):
            get_changes(since)
        metrics = self.metrics()
        self.assertEqual(metrics["ucreg_cache_entries"], CACHE_MAX_ENTRIES)
        self.assertLessEqual(metrics["ucreg_cache_bytes"], 16 << 20)

        # The newest key is still cached, and the first one was evicted.
        hits = metrics["ucreg_cache_hits_total"]
        get_changes(CACHE_MAX_ENTRIES + 99)
        self.assertEqual(self.metrics()["ucreg_cache_hits_total"], hits + 1)
        get_changes(0)
        self.assertEqual(self.metrics()["ucreg_cache_hits_total"], hits + 1)


if __name__ == "__main__":
    if not os.path.exists(regtest.MAKE_PACK):
        print("make_pack is not built")
        raise SystemExit(77)
    regtest.main()
