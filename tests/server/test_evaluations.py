#!/usr/bin/env python3
"""Evaluations, yanks and the statistics grouped by comparator and protocol."""

import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from test_packs import PackTest  # noqa: E402

PROTOCOL = {
    "corpus": "tinystories_sample.txt",
    "corpus_sha256": "f862d5c0f004d7c38ede6bb25d1c7a213dbd2064edd55c00504999d0d282d31b",
    "tokenizer": "tok512.bin",
    "tokenizer_sha256": "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
    "seq_len": 512,
    "windowing": {"mode": "document"},
    "documents": 5,
    "tokens": 1804,
}


def record(baseline=3.548, compressed=3.6, seq_len=512, comparator="canonical-transformer"):
    protocol = copy.deepcopy(PROTOCOL)
    protocol["seq_len"] = seq_len
    return {
        "metric": "ppl",
        "comparator": comparator,
        "architecture": "llama",
        "protocol": protocol,
        "baseline": baseline,
        "compressed": compressed,
        "ratio": compressed / baseline,
        "harness": "uc-eval 0.1.0",
    }


class EvaluationTest(PackTest):
    def post(self, slug, version, body, token=None):
        return self.daemon.request("POST", "/api/packs/%s/versions/%s/evaluations" % (slug, version),
                                   body=json.dumps(body).encode(), token=token or self.token)

    def test_evaluation_shown_on_pack(self):
        self.publish()
        response = self.post("stories", "1.0", record())
        self.assertEqual(response.status, 201, response.body)
        pack = self.daemon.request("GET", "/api/packs/stories").json()
        evaluations = pack["latest"]["evaluations"]
        self.assertEqual(len(evaluations), 1)
        self.assertEqual(evaluations[0]["comparator"], "canonical-transformer")
        kinds = [c["kind"] for c in self.daemon.request("GET", "/api/changes").json()["changes"]]
        self.assertEqual(kinds[-1], "evaluation")

    def test_invalid_records_rejected(self):
        self.publish()
        cases = {
            "metric": dict(record(), metric="bleu"),
            "comparator": dict(record(), comparator="best"),
            "baseline": dict(record(), baseline=-1),
            "ratio": dict(record(), ratio=0.5),
            "protocol.corpus_sha256": dict(record(), protocol=dict(PROTOCOL, corpus_sha256="x")),
            "protocol.tokens": dict(record(), protocol=dict(PROTOCOL, tokens=0)),
        }
        for field, body in cases.items():
            with self.subTest(field=field):
                problem = self.assertProblem(self.post("stories", "1.0", body), 400,
                                             "invalid_evaluation")
                self.assertIn(field.split(".")[0], problem["detail"])

    def test_overflowing_quotient_rejected(self):
        self.publish()
        cases = {
            "overflow": dict(record(), baseline=1e-300, compressed=1e300, ratio=1.0),
            "underflow": dict(record(), baseline=1e300, compressed=1e-300, ratio=1.0),
        }
        for name, body in cases.items():
            with self.subTest(case=name):
                problem = self.assertProblem(self.post("stories", "1.0", body), 400,
                                             "invalid_evaluation")
                self.assertIn("compressed / baseline", problem["detail"])
        stored = self.daemon.catalog().execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        self.assertEqual(stored, 0)

    def test_other_owner_invalid_record_forbidden(self):
        self.publish()
        body = dict(record(), metric="bleu")
        self.assertProblem(self.post("stories", "1.0", body, self.other_token), 403, "not_owner")

    def test_yank_reason_counts_characters(self):
        self.publish()
        path = "/api/packs/stories/versions/1.0/yank"
        too_long = json.dumps({"reason": "é" * 501}, ensure_ascii=False).encode()
        response = self.daemon.request("POST", path, body=too_long, token=self.token)
        self.assertProblem(response, 400, "yank_reason_missing")
        longest = json.dumps({"reason": "é" * 500}, ensure_ascii=False).encode()
        response = self.daemon.request("POST", path, body=longest, token=self.token)
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.json()["reason"], "é" * 500)
        again = self.daemon.request("POST", path, body=b'{"reason": "other"}', token=self.token)
        self.assertEqual(again.json()["reason"], "é" * 500)

    def test_other_owner_forbidden(self):
        self.publish()
        self.assertProblem(self.post("stories", "1.0", record(), self.other_token), 403,
                           "not_owner")

    def test_pack_digest_must_match(self):
        self.publish()
        body = dict(record(), pack={"name": "x", "manifest_sha256": "0" * 64, "dtype": "bf16"})
        self.assertProblem(self.post("stories", "1.0", body), 409, "evaluation_pack_mismatch")

    def test_stats_grouped_and_excluded(self):
        self.publish("alpha", "1.0")
        self.publish("beta", "1.0")
        self.publish("gamma", "1.0")
        self.publish("delta", "1.0")
        self.assertEqual(self.post("alpha", "1.0", record(compressed=3.60)).status, 201)
        self.assertEqual(self.post("beta", "1.0", record(compressed=3.70)).status, 201)
        self.assertEqual(self.post("gamma", "1.0", record(compressed=3.80)).status, 201)
        self.assertEqual(self.post("delta", "1.0", record(compressed=3.9, seq_len=256)).status,
                         201)
        self.assertEqual(self.post("beta", "1.0", record(compressed=3.9,
                                                          comparator="cls-cosine")).status, 201)
        yank = self.daemon.request("POST", "/api/packs/gamma/versions/1.0/yank",
                                   body=b'{"reason": "wrong tokenizer"}', token=self.token)
        self.assertEqual(yank.status, 200, yank.body)

        stats = self.daemon.request("GET", "/api/stats").json()["comparators"]
        self.assertEqual([c["comparator"] for c in stats], ["canonical-transformer", "cls-cosine"])
        groups = stats[0]["groups"]
        self.assertEqual(sorted(g["protocol"]["seq_len"] for g in groups), [256, 512])
        main = next(g for g in groups if g["protocol"]["seq_len"] == 512)
        self.assertEqual(main["count"], 2)
        self.assertEqual(sorted(r["slug"] for r in main["included"]), ["alpha", "beta"])
        self.assertEqual([(r["slug"], r["reason"]) for r in main["excluded"]],
                         [("gamma", "version yanked")])
        self.assertAlmostEqual(main["median"], (3.6 + 3.7) / 2 / 3.548)
        self.assertAlmostEqual(main["min"], 3.6 / 3.548)
        self.assertAlmostEqual(main["max"], 3.7 / 3.548)
        self.assertEqual(stats[1]["groups"][0]["count"], 1)

    def test_yank_needs_reason(self):
        self.publish()
        response = self.daemon.request("POST", "/api/packs/stories/versions/1.0/yank", body=b"{}",
                                       token=self.token)
        self.assertProblem(response, 400, "yank_reason_missing")

    def test_yanked_not_latest(self):
        self.publish("stories", "1.0")
        self.publish("stories", "2.0")
        self.assertEqual(self.daemon.request("GET", "/api/packs/stories").json()["latest"]["version"],
                         "2.0")
        response = self.daemon.request("POST", "/api/packs/stories/versions/2.0/yank",
                                       body=b'{"reason": "bad"}', token=self.token)
        self.assertEqual(response.status, 200)
        pack = self.daemon.request("GET", "/api/packs/stories").json()
        self.assertEqual(pack["latest"]["version"], "1.0")
        yanked = self.daemon.request("GET", "/api/packs/stories/versions/2.0").json()
        self.assertTrue(yanked["yanked"])
        self.assertEqual(yanked["yank_reason"], "bad")
        again = self.daemon.request("POST", "/api/packs/stories/versions/2.0/yank",
                                    body=b'{"reason": "other"}', token=self.token)
        self.assertEqual(again.json()["reason"], "bad")

    def test_delete_needs_admin(self):
        self.publish()
        path = "/api/packs/stories/versions/1.0"
        self.assertProblem(self.daemon.request("DELETE", path, token=self.token), 403,
                           "scope_insufficient")
        response = self.daemon.request("DELETE", path, token=self.admin_token)
        self.assertEqual(response.status, 200, response.body)
        self.assertProblem(self.daemon.request("GET", path), 404, "version_not_found")
        changes = self.daemon.request("GET", "/api/changes").json()["changes"]
        self.assertEqual(changes[-1]["kind"], "delete")
        self.assertEqual(changes[-1]["detail"], regtest.sha256_hex(self.manifest))
        for digest in self.shards:
            self.assertEqual(self.daemon.request("HEAD", "/api/blobs/sha256/" + digest).status, 200)

    def test_metrics_count_verify_runs(self):
        self.publish()
        text = self.daemon.request("GET", "/metrics").body.decode()
        self.assertIn("ucreg_verify_seconds_count 1", text)
        self.assertIn('ucreg_jobs{state="done"} 1', text)


if __name__ == "__main__":
    if not os.path.exists(regtest.MAKE_PACK):
        print("make_pack is not built")
        raise SystemExit(77)
    regtest.main()
