#!/usr/bin/env python3
"""Publishing and reading packs: manifests, ownership, names, verification, change feed."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import Daemon, DaemonTest, make_pack, wait_for_job  # noqa: E402


class PackTest(DaemonTest):
    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.TemporaryDirectory(prefix="ucregd-packs-")
        cls.manifest, cls.shards = make_pack(os.path.join(cls.scratch.name, "stories"))

    @classmethod
    def tearDownClass(cls):
        cls.scratch.cleanup()

    def upload_shards(self, token=None):
        for digest, data in self.shards.items():
            response = self.daemon.put_blob(data, token or self.token)
            self.assertIn(response.status, (200, 201), response.body)

    def put_version(self, slug, version, manifest=None, token=None):
        return self.daemon.request("PUT", "/api/packs/%s/versions/%s" % (slug, version),
                                   body=self.manifest if manifest is None else manifest,
                                   token=token or self.token,
                                   headers={"Content-Type": "application/json"})

    def publish(self, slug="stories", version="1.0", manifest=None, token=None):
        self.upload_shards(token)
        response = self.put_version(slug, version, manifest, token)
        self.assertEqual(response.status, 202, response.body)
        return wait_for_job(self.daemon, response.json()["job"])


class PublishTest(PackTest):
    def test_publish_then_verified(self):
        response = self.put_version("stories", "1.0")
        self.assertProblem(response, 409, "blobs_missing")
        self.upload_shards()
        response = self.put_version("stories", "1.0")
        self.assertEqual(response.status, 202, response.body)
        body = response.json()
        self.assertEqual(body["status"], "pending")
        self.assertEqual(response.header("location"), body["job"])
        job = wait_for_job(self.daemon, body["job"])
        self.assertEqual(job["state"], "done")
        self.assertEqual(job["version_status"], "verified")

        version = self.daemon.request("GET", "/api/packs/stories/versions/1.0").json()
        self.assertEqual(version["status"], "verified")
        self.assertEqual(version["verify_report"]["verdict"], "ok")
        self.assertEqual(version["manifest_digest"], regtest.sha256_hex(self.manifest))
        self.assertEqual(version["parameters"], 260032)

    def test_missing_blob_named(self):
        digest = next(iter(self.shards))
        problem = self.assertProblem(self.put_version("stories", "1.0"), 409, "blobs_missing")
        self.assertIn(digest, problem["detail"])
        self.assertEqual(self.daemon.request("GET", "/api/packs/stories").status, 404)

    def test_manifest_bytes_exact(self):
        self.publish()
        response = self.daemon.request("GET", "/api/packs/stories/versions/1.0/manifest")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, self.manifest)
        self.assertEqual(response.header("etag"), '"%s"' % regtest.sha256_hex(self.manifest))

    def test_identical_reupload_noop(self):
        self.publish()
        response = self.put_version("stories", "1.0")
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.json()["status"], "unchanged")

    def test_different_content_conflicts(self):
        self.publish()
        changed = json.loads(self.manifest)
        changed["model"]["name"] = "renamed"
        body = json.dumps(changed).encode()
        self.assertProblem(self.put_version("stories", "1.0", body), 409, "version_exists")

    def test_other_owner_forbidden(self):
        self.publish()
        self.upload_shards(self.other_token)
        response = self.put_version("stories", "2.0", token=self.other_token)
        self.assertProblem(response, 403, "not_owner")
        versions = self.daemon.request("GET", "/api/packs/stories/versions").json()["versions"]
        self.assertEqual([v["version"] for v in versions], ["1.0"])

    def test_admin_may_push_anywhere(self):
        self.publish()
        response = self.put_version("stories", "2.0", token=self.admin_token)
        self.assertEqual(response.status, 202, response.body)

    def test_push_without_token_stores_nothing(self):
        self.upload_shards()
        response = self.daemon.request("PUT", "/api/packs/stories/versions/1.0", body=self.manifest)
        self.assertProblem(response, 401, "token_missing")
        self.assertEqual(self.daemon.request("GET", "/api/packs/stories").status, 404)

    def test_bad_slugs_rejected(self):
        self.upload_shards()
        for path in ("/api/packs/../../x/versions/1", "/api/packs/a/../../x/versions/1",
                     "/api/packs/..%2fx/versions/1", "/api/packs/Upper/versions/1",
                     "/api/packs/" + "a" * 300 + "/versions/1", "/api/packs/a..b/versions/1",
                     "/api/packs/stories/versions/..", "/api/packs/stories/versions/V1"):
            with self.subTest(path=path):
                response = self.daemon.request("PUT", path, body=self.manifest, token=self.token)
                self.assertEqual(response.status, 400, response.body)
                self.assertIn(response.json()["code"],
                              ("invalid_path", "invalid_slug", "invalid_version"))
                response = self.daemon.request("GET", path)
                self.assertEqual(response.status, 400, response.body)
        self.assertEqual(self.daemon.request("GET", "/api/packs").json()["packs"], [])

    def test_deleted_version_not_reused(self):
        self.publish("stories", "1.0")
        url = "/api/packs/stories/versions/1.0"
        response = self.daemon.request("DELETE", url, token=self.admin_token)
        self.assertEqual(response.status, 200, response.body)

        other = json.dumps(json.loads(self.manifest), indent=1).encode()
        for manifest in (other, self.manifest):
            problem = self.assertProblem(self.put_version("stories", "1.0", manifest), 409,
                                         "version_deleted")
            self.assertIn(regtest.sha256_hex(self.manifest), problem["detail"])
        admin_put = self.put_version("stories", "1.0", other, token=self.admin_token)
        self.assertProblem(admin_put, 409, "version_deleted")
        self.assertEqual(self.daemon.request("GET", url + "/manifest").status, 404)
        self.assertEqual(self.put_version("stories", "1.1", other).status, 202)

    def test_not_json_rejected(self):
        self.assertProblem(self.put_version("stories", "1.0", b"not json"), 400,
                           "manifest_not_json")


class FailedVerificationTest(PackTest):
    def assertNeverVerified(self, slug, version, reason_word):
        response = self.daemon.request("GET", "/api/packs/%s/versions/%s" % (slug, version))
        self.assertEqual(response.status, 200)
        body = response.json()
        self.assertEqual(body["status"], "failed")
        self.assertIn(reason_word, body["status_reason"])
        pack = self.daemon.request("GET", "/api/packs/" + slug).json()
        self.assertIsNone(pack["latest"])
        listing = self.daemon.request("GET", "/api/packs").json()["packs"]
        self.assertIsNone(listing[0]["latest"])

    def test_structure_failure_recorded(self):
        broken = json.loads(self.manifest)
        broken["tensors"][0]["length"] = broken["tensors"][0]["length"] + 1
        body = json.dumps(broken).encode()
        self.upload_shards()
        problem = self.assertProblem(self.put_version("broken", "1.0", body), 422,
                                     "manifest_invalid")
        self.assertIn("tok_embeddings.weight", problem["detail"])
        self.assertNeverVerified("broken", "1.0", "tok_embeddings.weight")

    def test_failed_manifest_body_dropped(self):
        padded = json.loads(self.manifest)
        padded["padding"] = "x" * (1 << 20)
        body = json.dumps(padded).encode()
        self.assertProblem(self.put_version("padded", "1.0", body), 422, "manifest_invalid")

        db = self.daemon.catalog()
        size, digest, reason = db.execute(
            "SELECT length(manifest), manifest_digest, status_reason FROM versions"
            " WHERE version = '1.0'").fetchone()
        db.close()
        self.assertEqual(size, 0)
        self.assertEqual(digest, regtest.sha256_hex(body))
        self.assertIn("padding", reason)
        self.assertProblem(self.daemon.request("GET", "/api/packs/padded/versions/1.0/manifest"),
                           404, "manifest_not_kept")
        self.assertEqual(self.put_version("padded", "1.0", body).status, 200)

    def test_reconstruction_failure_recorded(self):
        broken = json.loads(self.manifest)
        broken["tensors"][0]["sha256"] = "0" * 64
        body = json.dumps(broken).encode()
        job = self.publish("tampered", "1.0", body)
        self.assertEqual(job["state"], "done")
        self.assertEqual(job["version_status"], "failed")
        self.assertNeverVerified("tampered", "1.0", "reconstruction")
        report = self.daemon.request("GET", "/api/packs/tampered/versions/1.0").json()
        self.assertEqual(report["verify_report"]["verdict"], "reconstruction_failed")


class ReadTest(PackTest):
    def test_pack_page_has_everything(self):
        self.publish()
        pack = self.daemon.request("GET", "/api/packs/stories").json()
        self.assertEqual(pack["owner"], "alice")
        self.assertEqual(pack["family"], "dense")
        latest = pack["latest"]
        self.assertEqual(latest["version"], "1.0")
        self.assertEqual(latest["verification"]["verdict"], "ok")
        self.assertEqual(latest["evaluations"], [])
        shard_digests = [s["digest"] for s in latest["downloads"]["shards"]]
        self.assertEqual(sorted(shard_digests), sorted(self.shards))
        self.assertEqual(latest["downloads"]["manifest"],
                         "/api/packs/stories/versions/1.0/manifest")

    def test_list_filters_and_pages(self):
        for slug in ("alpha", "beta", "gamma"):
            self.publish(slug, "1.0")
        first = self.daemon.request("GET", "/api/packs?limit=2").json()
        self.assertEqual([p["slug"] for p in first["packs"]], ["alpha", "beta"])
        second = self.daemon.request("GET", "/api/packs?limit=2&cursor=" + first["next_cursor"])
        second = second.json()
        self.assertEqual([p["slug"] for p in second["packs"]], ["gamma"])
        self.assertIsNone(second["next_cursor"])
        desc = self.daemon.request("GET", "/api/packs?sort=-slug").json()["packs"]
        self.assertEqual([p["slug"] for p in desc], ["gamma", "beta", "alpha"])
        found = self.daemon.request("GET", "/api/packs?q=amm").json()["packs"]
        self.assertEqual([p["slug"] for p in found], ["gamma"])
        self.assertEqual(self.daemon.request("GET", "/api/packs?family=moe").json()["packs"], [])
        self.assertEqual(len(self.daemon.request("GET", "/api/packs?family=dense").json()["packs"]),
                         3)

    def test_list_rejects_bad_arguments(self):
        for query in ("family=huge", "comparator=best", "sort=size", "limit=0", "cursor=zz"):
            with self.subTest(query=query):
                self.assertProblem(self.daemon.request("GET", "/api/packs?" + query), 400,
                                   "invalid_query")

    def test_changes_feed_since(self):
        self.publish()
        changes = self.daemon.request("GET", "/api/changes?since=0").json()
        kinds = [c["kind"] for c in changes["changes"]]
        self.assertEqual(kinds, ["publish", "verify"])
        self.assertEqual(changes["changes"][1]["detail"], "verified")
        last = changes["next_since"]
        later = self.daemon.request("GET", "/api/changes?since=%d" % last).json()
        self.assertEqual(later["changes"], [])
        response = self.daemon.request("GET", "/healthz")
        self.assertEqual(response.header("x-registry-serial"), str(last))

    def test_unknown_things_404(self):
        self.assertProblem(self.daemon.request("GET", "/api/packs/nothing"), 404, "pack_not_found")
        self.assertProblem(self.daemon.request("GET", "/api/jobs/99"), 404, "job_not_found")
        self.assertProblem(self.daemon.request("GET", "/api/jobs/x"), 400, "invalid_job_id")


class RestartTest(PackTest):
    def test_running_job_requeued_after_restart(self):
        self.upload_shards()
        self.daemon.stop()
        # A daemon with no workers accepts the version; the job stays queued.
        idle = Daemon("--workers", "1")
        idle.dir, idle.data_dir, idle.log_path = (self.daemon.dir, self.daemon.data_dir,
                                                  self.daemon.log_path + ".2")
        idle.start()
        response = idle.request("PUT", "/api/packs/stories/versions/1.0", body=self.manifest,
                                token=self.token)
        self.assertEqual(response.status, 202)
        job_url = response.json()["job"]
        self.assertEqual(wait_for_job(idle, job_url)["state"], "done")
        idle.stop()

        db = self.daemon.catalog()
        db.execute("UPDATE jobs SET state = 'running', attempts = 1")
        db.execute("UPDATE versions SET status = 'pending'")
        db.commit()
        db.close()
        again = Daemon()
        again.dir, again.data_dir, again.log_path = (self.daemon.dir, self.daemon.data_dir,
                                                     self.daemon.log_path + ".3")
        again.start()
        self.addCleanup(again.stop)
        job = wait_for_job(again, job_url)
        self.assertEqual(job["state"], "done")
        self.assertEqual(job["attempts"], 2)
        self.assertIn("requeued 1 verify jobs", again.log())

    def test_job_out_of_attempts_fails(self):
        self.publish()
        self.daemon.stop()
        db = self.daemon.catalog()
        db.execute("UPDATE jobs SET state = 'running', attempts = 3")
        db.execute("UPDATE versions SET status = 'pending'")
        db.commit()
        db.close()
        again = Daemon()
        again.dir, again.data_dir, again.log_path = (self.daemon.dir, self.daemon.data_dir,
                                                     self.daemon.log_path + ".2")
        again.start()
        self.addCleanup(again.stop)
        job = again.request("GET", "/api/jobs/1").json()
        self.assertEqual(job["state"], "failed")
        self.assertIn("interrupted 3 times", job["last_error"])
        version = again.request("GET", "/api/packs/stories/versions/1.0").json()
        self.assertEqual(version["status"], "failed")


if __name__ == "__main__":
    if not os.path.exists(regtest.MAKE_PACK):
        print("make_pack is not built")
        raise SystemExit(77)
    regtest.main()
