#!/usr/bin/env python3
"""GET /api/packs fields (ratio, comparator, update time, status) and every sort, walked page
by page; GET /api/stats rows with parameters and family."""

import binascii
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import make_pack, wait_for_job  # noqa: E402
from test_evaluations import record  # noqa: E402
from test_packs import PackTest  # noqa: E402

SORTS = ("slug", "family", "created", "updated", "parameters", "bits_per_weight", "ratio")

# Sort key of each sort, read from one listed pack. None sorts last in both directions.
SORT_KEYS = {
    "slug": lambda p: p["slug"],
    "family": lambda p: p["family"],
    "created": lambda p: p["created_at"],
    "updated": lambda p: p["updated_at"],
    "parameters": lambda p: p["latest"] and p["latest"]["parameters"],
    "bits_per_weight": lambda p: p["latest"] and p["latest"]["bits_per_weight"],
    "ratio": lambda p: p["latest"] and p["latest"]["ratio"],
}


class CatalogListTest(PackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rwkv_manifest, cls.rwkv_shards = make_pack(
            os.path.join(cls.scratch.name, "rwkv"), "tiny-rwkv-5v1-730K.safetensors", "recurrent")

    def upload_rwkv_shards(self):
        for data in self.rwkv_shards.values():
            response = self.daemon.put_blob(data, self.token)
            self.assertIn(response.status, (200, 201), response.body)

    def publish_rwkv(self, slug):
        self.upload_rwkv_shards()
        response = self.put_version(slug, "1.0", self.rwkv_manifest)
        self.assertEqual(response.status, 202, response.body)
        return wait_for_job(self.daemon, response.json()["job"])

    def evaluate(self, slug, body):
        response = self.daemon.request("POST", "/api/packs/%s/versions/1.0/evaluations" % slug,
                                       body=json.dumps(body).encode(), token=self.token)
        self.assertEqual(response.status, 201, response.body)

    def load_catalog(self):
        """Publishes packs that cover ties, a newer evaluation, no evaluation, a failed
        and a yanked version, so every sort meets equal keys and NULL keys."""
        self.publish("alpha")
        self.evaluate("alpha", record(compressed=3.60))
        self.publish_rwkv("beta")
        self.evaluate("beta", record(compressed=3.90, comparator="architecture-compatible"))
        self.evaluate("beta", record(compressed=3.65, comparator="architecture-compatible"))
        self.publish("gamma")
        self.publish("delta")
        self.evaluate("delta", record(compressed=3.60))
        broken = json.loads(self.manifest)
        broken["tensors"][0]["sha256"] = "0" * 64
        self.assertEqual(self.publish("epsilon", "1.0", json.dumps(broken).encode())
                         ["version_status"], "failed")
        self.publish("eta")
        yank = self.daemon.request("POST", "/api/packs/eta/versions/1.0/yank",
                                   body=b'{"reason": "wrong tokenizer"}', token=self.token)
        self.assertEqual(yank.status, 200, yank.body)
        self.publish_rwkv("zeta")
        self.evaluate("zeta", record(compressed=3.70, comparator="architecture-compatible"))

    def list_all(self, query=""):
        response = self.daemon.request("GET", "/api/packs?limit=500" + query)
        self.assertEqual(response.status, 200, response.body)
        return {p["slug"]: p for p in response.json()["packs"]}

    def pack_ids(self):
        db = self.daemon.catalog()
        try:
            return dict(db.execute("SELECT slug, id FROM packs"))
        finally:
            db.close()

    def expected_order(self, packs, ids, sort):
        """Orders slugs the way the API promises: key in the sort's direction with NULL
        keys last, then pack id in the same direction."""
        descending = sort.startswith("-")
        key = SORT_KEYS[sort.lstrip("-")]
        keyed = [p for p in packs.values() if key(p) is not None]
        null = [p for p in packs.values() if key(p) is None]
        keyed.sort(key=lambda p: (key(p), ids[p["slug"]]), reverse=descending)
        null.sort(key=lambda p: ids[p["slug"]], reverse=descending)
        return [p["slug"] for p in keyed + null]

    def walk(self, sort, limit):
        """Follows next_cursor from the first page and returns the slugs in page order."""
        slugs = []
        cursor = None
        for _ in range(50):
            path = "/api/packs?sort=%s&limit=%d" % (sort, limit)
            if cursor:
                path += "&cursor=" + cursor
            response = self.daemon.request("GET", path)
            self.assertEqual(response.status, 200, response.body)
            page = response.json()
            self.assertLessEqual(len(page["packs"]), limit)
            slugs += [p["slug"] for p in page["packs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return slugs
        self.fail("sort=%s did not reach a last page" % sort)

    def test_every_sort_pages_once_in_order(self):
        self.load_catalog()
        packs = self.list_all()
        ids = self.pack_ids()
        self.assertEqual(len(packs), 7)
        for name in SORTS:
            for sort in (name, "-" + name):
                expected = self.expected_order(packs, ids, sort)
                for limit in (1, 2, 3):
                    with self.subTest(sort=sort, limit=limit):
                        slugs = self.walk(sort, limit)
                        self.assertEqual(sorted(slugs), sorted(packs))
                        self.assertEqual(slugs, expected)

    def test_ratio_sort_nulls_last(self):
        self.load_catalog()
        ascending = self.walk("ratio", 2)
        self.assertEqual(ascending[:4], ["alpha", "delta", "beta", "zeta"])
        self.assertEqual(ascending[4:], ["gamma", "epsilon", "eta"])
        descending = self.walk("-ratio", 2)
        self.assertEqual(descending[:4], ["zeta", "beta", "delta", "alpha"])
        self.assertEqual(descending[4:], ["eta", "epsilon", "gamma"])

    def test_latest_has_newest_evaluation(self):
        self.load_catalog()
        packs = self.list_all()
        alpha = packs["alpha"]["latest"]
        self.assertEqual(alpha["metric"], "ppl")
        self.assertEqual(alpha["comparator"], "canonical-transformer")
        self.assertAlmostEqual(alpha["ratio"], 3.60 / 3.548)
        self.assertIsInstance(alpha["verified_at"], int)
        beta = packs["beta"]["latest"]
        self.assertEqual(beta["comparator"], "architecture-compatible")
        self.assertAlmostEqual(beta["ratio"], 3.65 / 3.548)
        gamma = packs["gamma"]["latest"]
        self.assertEqual(gamma["version"], "1.0")
        self.assertIsNone(gamma["metric"])
        self.assertIsNone(gamma["comparator"])
        self.assertIsNone(gamma["ratio"])

    def test_status_of_each_pack(self):
        self.load_catalog()
        packs = self.list_all()
        self.assertEqual(packs["alpha"]["status"], "verified")
        self.assertEqual(packs["epsilon"]["status"], "failed")
        self.assertIsNone(packs["epsilon"]["latest"])
        self.assertEqual(packs["eta"]["status"], "yanked")
        self.assertIsNone(packs["eta"]["latest"])

    def test_updated_at_is_newest_change(self):
        self.load_catalog()
        db = self.daemon.catalog()
        try:
            db.execute("UPDATE evaluations SET created_at = created_at + 1000 WHERE id ="
                       " (SELECT max(id) FROM evaluations)")
            db.execute("UPDATE versions SET verified_at = verified_at + 500 WHERE pack_id ="
                       " (SELECT id FROM packs WHERE slug = 'gamma')")
            db.commit()
            times = dict(db.execute(
                "SELECT p.slug, max(max(v.created_at, coalesce(v.verified_at, 0),"
                " coalesce(e.created_at, 0))) FROM packs p JOIN versions v ON v.pack_id = p.id"
                " LEFT JOIN evaluations e ON e.version_id = v.id GROUP BY p.slug"))
        finally:
            db.close()
        packs = self.list_all()
        for slug, pack in packs.items():
            with self.subTest(slug=slug):
                self.assertEqual(pack["updated_at"], times[slug])
                if pack["latest"]:
                    self.assertEqual(pack["latest"]["updated_at"], times[slug])
        self.assertEqual(self.walk("-updated", 3)[:2], ["zeta", "gamma"])

    def test_filters_combine_with_new_sorts(self):
        self.load_catalog()
        response = self.daemon.request(
            "GET", "/api/packs?sort=-ratio&family=recurrent&comparator=architecture-compatible")
        self.assertEqual([p["slug"] for p in response.json()["packs"]], ["zeta", "beta"])

    def test_cursor_of_other_sort_rejected(self):
        self.load_catalog()
        first = self.daemon.request("GET", "/api/packs?sort=ratio&limit=2").json()
        self.assertProblem(self.daemon.request(
            "GET", "/api/packs?sort=-ratio&cursor=" + first["next_cursor"]), 400, "invalid_query")

    def test_malformed_cursor_rejected(self):
        self.publish("alpha")
        for plain in ("ratio|vnot-a-number|1", "parameters|v12x|1", "ratio|x1.0|1",
                      "ratio|n|", "slug|valpha|1z"):
            sort = plain.split("|")[0]
            cursor = binascii.hexlify(plain.encode()).decode()
            with self.subTest(cursor=plain):
                self.assertProblem(self.daemon.request(
                    "GET", "/api/packs?sort=%s&cursor=%s" % (sort, cursor)), 400, "invalid_query")

    def test_stats_rows_have_parameters(self):
        self.load_catalog()
        stats = self.daemon.request("GET", "/api/stats").json()["comparators"]
        rows = {}
        for comparator in stats:
            for group in comparator["groups"]:
                for row in group["included"] + group["excluded"]:
                    rows[(row["slug"], row["evaluation"])] = row
        alpha = next(r for (slug, _), r in rows.items() if slug == "alpha")
        self.assertEqual(alpha["parameters"], 260032)
        self.assertEqual(alpha["family"], "dense")
        self.assertEqual(alpha["version"], "1.0")
        betas = [r for (slug, _), r in rows.items() if slug == "beta"]
        self.assertEqual(len(betas), 2)
        for row in betas:
            self.assertEqual(row["family"], "recurrent")
            self.assertGreater(row["parameters"], 260032)


if __name__ == "__main__":
    if not os.path.exists(regtest.MAKE_PACK):
        print("make_pack is not built")
        raise SystemExit(77)
    regtest.main()
