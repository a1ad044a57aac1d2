#!/usr/bin/env python3
"""Mirrors: two real daemons on loopback, an upstream and a follower (ucregd --mirror-of),
plus a small HTTP stub between them that can throttle shard downloads, replay an old
snapshot or serve hostile names. Signing in the stub uses the openssl command."""

import base64
import http.client
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import Daemon, make_pack, wait_for_job, wait_until  # noqa: E402
from test_evaluations import record  # noqa: E402

SYNC_TIMEOUT = 20.0


def canonical(signed):
    """The bytes a snapshot signature covers (see docs/api.md)."""
    return json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()


class Stub(http.server.ThreadingHTTPServer):
    """An HTTP/1.1 server on loopback that forwards GETs to `upstream_port` unless `overrides`
    has the path. It records each request's path and Range header, and sends shard bodies
    at about `throttle` bytes per second when set."""

    daemon_threads = True

    def __init__(self, upstream_port=None):
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.upstream_port = upstream_port
        self.overrides = {}
        self.throttle = 0
        self.requests = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def close(self):
        self.shutdown()
        self.server_close()


class StubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        throttle = self.server.throttle if self.path.startswith("/api/blobs/") else 0
        if not throttle:
            self.wfile.write(body)
            return
        step = max(1, throttle // 20)
        try:
            for start in range(0, len(body), step):
                self.wfile.write(body[start:start + step])
                self.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        override = self.server.overrides.get(self.path.split("?")[0])
        if override is not None:
            self.send_body(200, override, [("Content-Type", "application/json")])
            return
        if self.server.upstream_port is None:
            self.send_body(404, b'{"code":"not_found"}')
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        headers = {"Range": self.headers["Range"]} if self.headers.get("Range") else {}
        conn.request("GET", self.path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        passed = [(k, v) for k, v in response.getheaders()
                  if k.lower() in ("content-type", "content-range")]
        conn.close()
        self.send_body(response.status, body, passed)


class MirrorTest(unittest.TestCase):
    """An upstream with a signing key and push and admin tokens, and packs to publish."""

    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.TemporaryDirectory(prefix="ucregd-mirror-")
        cls.stories = make_pack(os.path.join(cls.scratch.name, "stories"))
        cls.rwkv = make_pack(os.path.join(cls.scratch.name, "rwkv"),
                             "tiny-rwkv-5v1-730K-FP32.bin", "recurrent")

    @classmethod
    def tearDownClass(cls):
        cls.scratch.cleanup()

    def setUp(self):
        self.upstream = Daemon()
        self.addCleanup(self.upstream.close)
        self.token = self.upstream.create_token("alice", "push")
        self.admin = self.upstream.create_token("root", "admin")
        keygen = self.upstream.run("keygen")
        self.assertEqual(keygen.returncode, 0, keygen.stderr)
        self.key_file = os.path.join(self.upstream.dir, "upstream.pem")
        with open(self.key_file, "w") as f:
            f.write(keygen.stdout)
        self.upstream.start()

    def publish(self, version, pack=None, slug="stories"):
        manifest, shards = pack or self.stories
        for data in shards.values():
            self.assertIn(self.upstream.put_blob(data, self.token).status, (200, 201))
        response = self.upstream.request(
            "PUT", "/api/packs/%s/versions/%s" % (slug, version), body=manifest,
            token=self.token, headers={"Content-Type": "application/json"})
        self.assertEqual(response.status, 202, response.body)
        job = wait_for_job(self.upstream, response.json()["job"])
        self.assertEqual(job["version_status"], "verified")

    def start_mirror(self, url=None):
        mirror = Daemon("--mirror-of", url or "http://127.0.0.1:%d" % self.upstream.port,
                        "--upstream-key", self.key_file, "--mirror-interval", "1")
        self.addCleanup(mirror.close)
        return mirror.start()

    def status(self, mirror):
        response = mirror.request("GET", "/api/mirror/status")
        self.assertEqual(response.status, 200, response.body)
        return response.json()

    def wait_version(self, mirror, slug, version, present=True):
        path = "/api/packs/%s/versions/%s" % (slug, version)
        ok = wait_until(lambda: (mirror.request("GET", path).status == 200) == present,
                        SYNC_TIMEOUT)
        self.assertTrue(ok, "%s %s on the mirror:\n%s" % (path, "never appeared" if present
                                                         else "never went away", mirror.log()))

    def wait_failure(self, mirror, kind, text):
        def found():
            return any(f["kind"] == kind and text in f["message"]
                       for f in self.status(mirror)["failures"])
        self.assertTrue(wait_until(found, SYNC_TIMEOUT),
                        "no %s failure with '%s':\n%s" % (kind, text, self.status(mirror)))


class SyncTest(MirrorTest):
    def test_full_then_incremental(self):
        self.publish("1.0")
        mirror = self.start_mirror()
        self.wait_version(mirror, "stories", "1.0")
        version = mirror.request("GET", "/api/packs/stories/versions/1.0").json()
        self.assertEqual(version["status"], "verified")
        self.assertEqual(version["verify_report"]["verdict"], "ok")
        manifest = mirror.request("GET", "/api/packs/stories/versions/1.0/manifest")
        self.assertEqual(manifest.body, self.stories[0])
        for digest, data in self.stories[1].items():
            self.assertEqual(mirror.request("GET", "/api/blobs/sha256/" + digest).body, data)

        self.publish("1.1", self.rwkv)
        self.wait_version(mirror, "stories", "1.1")
        serial = self.upstream.request("GET", "/api/changes").json()["serial"]
        self.assertTrue(wait_until(lambda: self.status(mirror)["accepted_serial"] == serial,
                                   SYNC_TIMEOUT))
        status = self.status(mirror)
        self.assertEqual(status["upstream"], "http://127.0.0.1:%d" % self.upstream.port)
        self.assertEqual(status["upstream_serial"], serial)
        self.assertEqual(status["lag_events"], 0)
        self.assertTrue(status["full_sync_done"])
        self.assertIsNotNone(status["last_sync_at"])
        self.assertEqual(status["failure_count"], 0, status)
        self.assertIn("incremental round", mirror.log())

    def test_mirror_refuses_writes(self):
        mirror = self.start_mirror()
        response = mirror.request("PUT", "/api/packs/stories/versions/1.0", body=self.stories[0],
                                  token=self.token, headers={"Content-Type": "application/json"})
        self.assertEqual(response.status, 405, response.body)
        self.assertEqual(response.header("allow"), "GET, HEAD")
        problem = response.json()
        self.assertEqual(problem["code"], "read_only_mirror")
        self.assertEqual(problem["upstream"], "http://127.0.0.1:%d" % self.upstream.port)

    def test_yank_and_delete_propagate(self):
        self.publish("1.0")
        self.publish("1.1", self.rwkv)
        mirror = self.start_mirror()
        self.wait_version(mirror, "stories", "1.1")
        response = self.upstream.request("POST", "/api/packs/stories/versions/1.0/yank",
                                         body=json.dumps({"reason": "wrong tokenizer"}),
                                         token=self.token,
                                         headers={"Content-Type": "application/json"})
        self.assertEqual(response.status, 200, response.body)
        response = self.upstream.request("DELETE", "/api/packs/stories/versions/1.1",
                                         token=self.admin)
        self.assertEqual(response.status, 200, response.body)

        self.wait_version(mirror, "stories", "1.1", present=False)
        self.assertTrue(wait_until(lambda: mirror.request(
            "GET", "/api/packs/stories/versions/1.0").json()["yanked"], SYNC_TIMEOUT))
        version = mirror.request("GET", "/api/packs/stories/versions/1.0").json()
        self.assertEqual(version["yank_reason"], "wrong tokenizer")
        kinds = [c["kind"] for c in mirror.request("GET", "/api/changes").json()["changes"]]
        self.assertIn("yank", kinds)
        self.assertIn("delete", kinds)


class EvaluationMirrorTest(MirrorTest):
    def post_evaluation(self, body, slug="stories"):
        response = self.upstream.request(
            "POST", "/api/packs/%s/versions/1.0/evaluations" % slug,
            body=json.dumps(body).encode(), token=self.token)
        self.assertEqual(response.status, 201, response.body)
        return response.json()

    def mirror_evaluations(self, mirror):
        """The evaluations of the mirror's latest stories version, [] before it is published."""
        response = mirror.request("GET", "/api/packs/stories")
        if response.status == 404:
            return []
        self.assertEqual(response.status, 200, response.body)
        return response.json()["latest"]["evaluations"]

    def wait_evaluations(self, mirror, count):
        self.assertTrue(wait_until(lambda: len(self.mirror_evaluations(mirror)) == count,
                                   SYNC_TIMEOUT),
                        "the mirror never had %d evaluations:\n%s" % (count, mirror.log()))

    def stats_without_ids(self, daemon):
        """/api/stats with the evaluation ids removed, because a mirror numbers its own rows."""
        stats = daemon.request("GET", "/api/stats").json()
        for comparator in stats["comparators"]:
            for group in comparator["groups"]:
                for row in group["included"] + group["excluded"]:
                    del row["evaluation"]
        return stats

    def test_evaluations_before_and_after_sync(self):
        self.publish("1.0")
        first = self.post_evaluation(record(compressed=3.6))
        mirror = self.start_mirror()
        self.wait_evaluations(mirror, 1)
        second = self.post_evaluation(record(compressed=3.7, seq_len=256))
        self.wait_evaluations(mirror, 2)

        copied = self.mirror_evaluations(mirror)
        for posted, local in zip((first, second), copied):
            for field in ("metric", "comparator", "protocol", "baseline", "compressed", "ratio",
                          "harness"):
                self.assertEqual(local[field], posted[field], field)
        upstream = self.upstream.request("GET", "/api/packs/stories").json()
        self.assertEqual([e["submitted_at"] for e in copied],
                         [e["submitted_at"] for e in upstream["latest"]["evaluations"]])
        stats = self.stats_without_ids(mirror)
        self.assertEqual(sum(len(g["included"]) for c in stats["comparators"]
                             for g in c["groups"]), 2)
        self.assertEqual(stats, self.stats_without_ids(self.upstream))
        kinds = [c["kind"] for c in mirror.request("GET", "/api/changes").json()["changes"]]
        self.assertEqual(kinds.count("evaluation"), 2)

    def test_second_sync_no_duplicates(self):
        self.publish("1.0")
        self.post_evaluation(record(compressed=3.6))
        mirror = self.start_mirror()
        self.wait_evaluations(mirror, 1)
        self.post_evaluation(record(compressed=3.7, seq_len=256))
        self.wait_evaluations(mirror, 2)

        # A restart runs a full round, which fetches every version's evaluations again.
        self.assertEqual(mirror.stop(), 0)
        mirror.start()
        self.assertTrue(wait_until(lambda: mirror.log().count("full round") == 1
                                   and "applied in" in mirror.log(), SYNC_TIMEOUT),
                        mirror.log())
        self.assertEqual(len(self.mirror_evaluations(mirror)), 2)
        kinds = [c["kind"] for c in mirror.request("GET", "/api/changes").json()["changes"]]
        self.assertEqual(kinds.count("evaluation"), 2)

    def test_invalid_upstream_evaluation_rejected(self):
        self.publish("1.0")
        good = self.post_evaluation(record(compressed=3.6))
        path = "/api/packs/stories/versions/1.0"
        document = self.upstream.request("GET", path).json()
        bad = dict(good, id=good["id"] + 1000, ratio=0.5)
        other_pack = dict(good, id=good["id"] + 1001,
                          pack={"name": "x", "manifest_sha256": "0" * 64, "dtype": "bf16"})
        document["evaluations"] = [bad, other_pack] + document["evaluations"]
        stub = Stub(self.upstream.port)
        self.addCleanup(stub.close)
        stub.overrides[path] = json.dumps(document).encode()

        mirror = self.start_mirror(stub.url)
        self.wait_failure(mirror, "evaluation", "ratio 0.5 differs")
        self.wait_failure(mirror, "evaluation", "is not this version's manifest")
        self.wait_evaluations(mirror, 1)
        self.assertEqual(self.mirror_evaluations(mirror)[0]["compressed"], 3.6)

    def test_refused_version_gets_no_evaluations(self):
        self.publish("1.0")
        self.publish("1.0", self.rwkv, slug="rwkv")
        self.post_evaluation(record(compressed=3.6))
        self.post_evaluation(record(compressed=3.7), slug="rwkv")
        path = self.upstream.blob_path(next(iter(self.stories[1])))
        with open(path, "r+b") as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0x01]))

        mirror = self.start_mirror()
        self.wait_failure(mirror, "version", "hashes to")
        self.assertTrue(wait_until(lambda: len(mirror.request(
            "GET", "/api/packs/rwkv").json().get("latest", {}).get("evaluations", [])) == 1,
            SYNC_TIMEOUT), mirror.log())
        self.assertEqual(mirror.request("GET", "/api/packs/stories").status, 404)
        stats = self.stats_without_ids(mirror)
        slugs = [row["slug"] for c in stats["comparators"] for g in c["groups"]
                 for row in g["included"] + g["excluded"]]
        self.assertEqual(slugs, ["rwkv"])
        changes = mirror.request("GET", "/api/changes").json()["changes"]
        self.assertEqual([c["slug"] for c in changes if c["kind"] == "evaluation"], ["rwkv"])


class TamperTest(MirrorTest):
    def test_flipped_byte_refuses_version(self):
        self.publish("1.0")
        self.publish("1.0", self.rwkv, slug="rwkv")
        digest = next(iter(self.stories[1]))
        path = self.upstream.blob_path(digest)
        with open(path, "r+b") as f:
            f.seek(1000)
            byte = f.read(1)
            f.seek(1000)
            f.write(bytes([byte[0] ^ 0x01]))

        mirror = self.start_mirror()
        self.wait_version(mirror, "rwkv", "1.0")
        self.wait_failure(mirror, "version", "hashes to")
        self.assertEqual(mirror.request("GET", "/api/packs/stories/versions/1.0").status, 404)
        failure = [f for f in self.status(mirror)["failures"] if f["kind"] == "version"][0]
        self.assertEqual((failure["slug"], failure["version"]), ("stories", "1.0"))
        self.assertFalse(os.path.exists(mirror.blob_path(digest)))
        self.assertEqual(os.listdir(os.path.join(mirror.data_dir, "mirror-partial")), [])

    def test_sigkill_mid_download_resumes(self):
        self.publish("1.0", self.rwkv, slug="rwkv")
        stub = Stub(self.upstream.port)
        self.addCleanup(stub.close)
        stub.throttle = 60000
        mirror = self.start_mirror(url=stub.url)
        digest = next(iter(self.rwkv[1]))
        partial = os.path.join(mirror.data_dir, "mirror-partial", digest + ".part")
        self.assertTrue(wait_until(lambda: os.path.exists(partial)
                                   and os.path.getsize(partial) >= 65536, SYNC_TIMEOUT),
                        mirror.log())
        mirror.stop(signal.SIGKILL)
        kept = os.path.getsize(partial)
        self.assertLess(kept, len(self.rwkv[1][digest]))
        self.assertFalse(os.path.exists(mirror.blob_path(digest)))
        catalog = mirror.catalog()
        self.assertEqual(catalog.execute("SELECT count(*) FROM versions").fetchone()[0], 0)
        catalog.close()

        stub.throttle = 0
        mirror.start()
        self.wait_version(mirror, "rwkv", "1.0")
        ranges = [r for p, r in stub.requests if p == "/api/blobs/sha256/" + digest and r]
        self.assertTrue(ranges, stub.requests)
        self.assertEqual(int(ranges[-1].split("=")[1].rstrip("-")), kept)
        self.assertIn("resumed shard %s from byte %d" % (digest, kept), mirror.log())
        with open(mirror.blob_path(digest), "rb") as f:
            self.assertEqual(f.read(), self.rwkv[1][digest])
        self.assertFalse(os.path.exists(partial))


class SnapshotTest(MirrorTest):
    def test_older_snapshot_refused(self):
        self.publish("1.0")
        stale = self.upstream.request("GET", "/api/snapshot").body
        self.publish("1.1", self.rwkv)
        stub = Stub(self.upstream.port)
        self.addCleanup(stub.close)
        mirror = self.start_mirror(url=stub.url)
        self.wait_version(mirror, "stories", "1.1")
        # The version becomes visible before the round records its serial.
        accepted = self.upstream.request("GET", "/api/changes").json()["serial"]
        self.assertTrue(wait_until(lambda: self.status(mirror)["accepted_serial"] == accepted,
                                   SYNC_TIMEOUT))

        stub.overrides["/api/snapshot"] = stale
        self.wait_failure(mirror, "snapshot", "older than the last accepted serial %d" % accepted)
        self.assertEqual(self.status(mirror)["accepted_serial"], accepted)
        self.assertEqual(mirror.request("GET", "/api/packs/stories/versions/1.1").status, 200)

    def test_unsigned_and_badly_signed_refused(self):
        self.publish("1.0")
        snapshot = self.upstream.request("GET", "/api/snapshot").json()
        stub = Stub(self.upstream.port)
        self.addCleanup(stub.close)
        unsigned = {"signed": snapshot["signed"]}
        stub.overrides["/api/snapshot"] = json.dumps(unsigned).encode()
        mirror = self.start_mirror(url=stub.url)
        self.wait_failure(mirror, "snapshot", "unsigned")

        forged = json.loads(json.dumps(snapshot))
        forged["signed"]["serial"] += 100
        stub.overrides["/api/snapshot"] = json.dumps(forged).encode()
        self.wait_failure(mirror, "snapshot", "signature is invalid")
        self.assertEqual(mirror.request("GET", "/api/packs/stories/versions/1.0").status, 404)
        self.assertEqual(self.status(mirror)["accepted_serial"], 0)


class SignedStubTest(unittest.TestCase):
    """A stub upstream with its own key that signs whatever snapshot a test builds."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ucregd-stub-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.key = os.path.join(self.dir, "key.pem")
        self.public = os.path.join(self.dir, "public.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.key],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-out", self.public],
                       check=True, capture_output=True)
        self.stub = Stub()
        self.addCleanup(self.stub.close)
        self.mirror = Daemon("--mirror-of", self.stub.url, "--upstream-key", self.public,
                             "--mirror-interval", "1")
        self.addCleanup(self.mirror.close)

    def serve_snapshot(self, versions, serial=5, expires_in=3600):
        now = int(time.time())
        signed = {"serial": serial, "generated_at": now, "expires_at": now + expires_in,
                  "versions": versions}
        data = os.path.join(self.dir, "signed")
        with open(data, "wb") as f:
            f.write(canonical(signed))
        signature = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", self.key, "-rawin",
                                    "-in", data], check=True, capture_output=True).stdout
        self.stub.overrides["/api/snapshot"] = json.dumps(
            {"signed": signed, "signature": base64.b64encode(signature).decode(),
             "algorithm": "ed25519"}).encode()

    def failures(self):
        return self.mirror.request("GET", "/api/mirror/status").json()["failures"]

    def wait_failure(self, kind, text):
        found = wait_until(lambda: any(f["kind"] == kind and text in f["message"]
                                       for f in self.failures()), SYNC_TIMEOUT)
        self.assertTrue(found, "no %s failure with '%s': %s" % (kind, text, self.failures()))

    def test_hostile_names_refused(self):
        digest = "0" * 64
        self.serve_snapshot([
            {"slug": "../../.bashrc", "version": "1.0", "manifest_sha256": digest,
             "status": "verified", "yanked": False},
            {"slug": "stories", "version": "../../../etc", "manifest_sha256": digest,
             "status": "verified", "yanked": False},
            {"slug": "stories", "version": "1.0", "manifest_sha256": "../../x",
             "status": "verified", "yanked": False},
        ])
        self.mirror.start()
        self.wait_failure("path", "'../../.bashrc@1.0'")
        self.wait_failure("path", "'stories@../../../etc'")
        self.wait_failure("path", "manifest digest '../../x'")
        manifest_requests = [p for p, _ in self.stub.requests if "/versions/" in p]
        self.assertEqual(manifest_requests, [])
        self.assertFalse(os.path.exists(os.path.join(self.mirror.dir, ".bashrc")))
        catalog = self.mirror.catalog()
        self.assertEqual(catalog.execute("SELECT count(*) FROM versions").fetchone()[0], 0)
        catalog.close()

    def test_expired_snapshot_refused(self):
        self.serve_snapshot([], expires_in=-60)
        self.mirror.start()
        self.wait_failure("snapshot", "expired")
        status = self.mirror.request("GET", "/api/mirror/status").json()
        self.assertEqual(status["accepted_serial"], 0)
        self.assertIsNone(status["last_sync_at"])


UC = os.path.join(regtest.BUILD_DIR, "cli", "uc")


class UcMirrorTest(MirrorTest):
    """uc mirror URL DIR: a plain tree of verified packs."""

    def uc_mirror(self, url=None):
        out = os.path.join(self.upstream.dir, "tree")
        result = subprocess.run([UC, "mirror", url or "http://127.0.0.1:%d" % self.upstream.port,
                                 out, "--key", self.key_file, "--threads", "1"],
                                capture_output=True, text=True, timeout=60)
        return out, result

    def test_full_sync_tree(self):
        self.publish("1.0")
        self.publish("1.0", self.rwkv, slug="rwkv")
        out, result = self.uc_mirror()
        self.assertEqual(result.returncode, 0, result.stderr)
        for slug, (manifest, shards) in (("stories", self.stories), ("rwkv", self.rwkv)):
            pack = os.path.join(out, "packs", slug, "1.0")
            with open(os.path.join(pack, "manifest.json"), "rb") as f:
                self.assertEqual(f.read(), manifest)
            for digest, data in shards.items():
                with open(os.path.join(pack, digest), "rb") as f:
                    self.assertEqual(f.read(), data)
        with open(os.path.join(out, "snapshot.json"), "rb") as f:
            saved = json.loads(f.read())
        self.assertEqual(len(saved["signed"]["versions"]), 2)
        self.assertEqual(os.listdir(os.path.join(out, ".uc-mirror")), [])

        response = self.upstream.request("DELETE", "/api/packs/rwkv/versions/1.0", token=self.admin)
        self.assertEqual(response.status, 200, response.body)
        out, result = self.uc_mirror()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "packs", "rwkv")))
        self.assertTrue(os.path.exists(os.path.join(out, "packs", "stories", "1.0")))

    def test_tampered_blob_refused(self):
        self.publish("1.0")
        self.publish("1.0", self.rwkv, slug="rwkv")
        digest = next(iter(self.stories[1]))
        with open(self.upstream.blob_path(digest), "r+b") as f:
            f.seek(500)
            byte = f.read(1)
            f.seek(500)
            f.write(bytes([byte[0] ^ 0x80]))
        out, result = self.uc_mirror()
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("stories@1.0 rejected", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "packs", "stories", "1.0")))
        self.assertTrue(os.path.exists(os.path.join(out, "packs", "rwkv", "1.0", "manifest.json")))
        self.assertFalse(os.path.exists(os.path.join(out, "snapshot.json")))

    def test_older_snapshot_refused(self):
        self.publish("1.0")
        stale = self.upstream.request("GET", "/api/snapshot").body
        self.publish("1.1", self.rwkv)
        out, result = self.uc_mirror()
        self.assertEqual(result.returncode, 0, result.stderr)
        stub = Stub(self.upstream.port)
        self.addCleanup(stub.close)
        stub.overrides["/api/snapshot"] = stale
        out, result = self.uc_mirror(stub.url)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("older than the last accepted serial", result.stderr)
        self.assertTrue(os.path.exists(os.path.join(out, "packs", "stories", "1.1")))


if __name__ == "__main__":
    regtest.main()
