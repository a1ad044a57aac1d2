#!/usr/bin/env python3
"""Blob uploads and downloads: authentication, digest checks, cut-off uploads, ranges."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import DaemonTest, sha256_hex, wait_until  # noqa: E402

MIB = 1 << 20


def blob_rows(daemon):
    db = daemon.catalog()
    try:
        return [row[0] for row in db.execute("SELECT digest FROM blobs")]
    finally:
        db.close()


class BlobUploadTest(DaemonTest):
    def assertNothingStored(self, digest):
        self.assertFalse(os.path.exists(self.daemon.blob_path(digest)))
        self.assertNotIn(digest, blob_rows(self.daemon))
        self.assertTrue(wait_until(lambda: self.daemon.tmp_files() == []), self.daemon.tmp_files())
        self.assertEqual(self.daemon.request("GET", "/api/blobs/sha256/" + digest).status, 404)

    def test_put_then_get(self):
        data = os.urandom(100000)
        digest = sha256_hex(data)
        response = self.daemon.put_blob(data, self.token)
        self.assertEqual(response.status, 201, response.body)
        self.assertEqual(response.json()["size"], len(data))
        self.assertEqual(response.header("location"), "/api/blobs/sha256/" + digest)
        got = self.daemon.request("GET", "/api/blobs/sha256/" + digest)
        self.assertEqual(got.status, 200)
        self.assertEqual(got.body, data)
        self.assertEqual(got.header("etag"), '"%s"' % digest)
        self.assertIn("immutable", got.header("cache-control"))
        self.assertEqual(blob_rows(self.daemon), [digest])

    def test_put_without_token(self):
        data = b"no token"
        self.assertProblem(self.daemon.put_blob(data, None), 401, "token_missing")
        self.assertNothingStored(sha256_hex(data))

    def test_put_with_wrong_token(self):
        data = b"wrong token"
        self.assertProblem(self.daemon.put_blob(data, "ucr_" + "0" * 64), 401, "token_invalid")
        self.assertNothingStored(sha256_hex(data))

    def test_digest_mismatch_stores_nothing(self):
        data = b"these bytes do not hash to the URL"
        wrong = sha256_hex(b"something else")
        problem = self.assertProblem(self.daemon.put_blob(data, self.token, digest=wrong), 400,
                                     "digest_mismatch")
        self.assertIn(wrong, problem["detail"])
        self.assertIn(sha256_hex(data), problem["detail"])
        self.assertNothingStored(wrong)
        self.assertNothingStored(sha256_hex(data))

    def test_invalid_digest_rejected(self):
        for digest in ("abc", "A" * 64, "g" * 64, "0" * 65):
            with self.subTest(digest=digest):
                self.assertProblem(self.daemon.put_blob(b"x", self.token, digest=digest), 400,
                                   "invalid_digest")

    def test_identical_reupload_is_noop(self):
        data = b"twice"
        self.assertEqual(self.daemon.put_blob(data, self.token).status, 201)
        again = self.daemon.put_blob(data, self.other_token)
        self.assertEqual(again.status, 200)
        self.assertFalse(again.json()["created"])

    def test_max_blob_size_enforced(self):
        self.daemon.stop()
        daemon = regtest.Daemon("--max-blob-size", "1K")
        self.addCleanup(daemon.close)
        token = daemon.create_token("small")
        daemon.start()
        data = b"y" * 2048
        problem = self.assertProblem(daemon.put_blob(data, token), 413, "blob_too_large")
        self.assertIn("1024", problem["detail"])
        self.assertEqual(daemon.put_blob(b"y" * 1024, token).status, 201)

    def send_partial(self, digest, declared_length, data):
        sock = self.daemon.connect()
        head = ("PUT /api/blobs/sha256/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
                % (digest, self.token, declared_length))
        sock.sendall(head.encode())
        sock.sendall(data)
        time.sleep(0.2)
        sock.close()

    def test_cut_off_upload_then_retry(self):
        data = os.urandom(5 * MIB)
        digest = sha256_hex(data)
        self.send_partial(digest, len(data), data[:3 * MIB])
        self.assertTrue(wait_until(lambda: "ended early" in self.daemon.log()))
        self.assertNothingStored(digest)
        response = self.daemon.put_blob(data, self.token)
        self.assertEqual(response.status, 201, response.body)
        self.assertEqual(self.daemon.request("GET", "/api/blobs/sha256/" + digest).body, data)

    def test_huge_length_closed_early(self):
        digest = "1" * 64
        self.send_partial(digest, 4294967396, os.urandom(MIB))
        self.assertTrue(wait_until(lambda: "ended early" in self.daemon.log()))
        self.assertNothingStored(digest)
        self.assertEqual(self.daemon.request("GET", "/healthz").status, 200)


class BlobDownloadTest(DaemonTest):
    def setUp(self):
        super().setUp()
        self.data = bytes(range(256)) * 40
        self.digest = sha256_hex(self.data)
        self.assertEqual(self.daemon.put_blob(self.data, self.token).status, 201)
        self.path = "/api/blobs/sha256/" + self.digest

    def get_range(self, value):
        return self.daemon.request("GET", self.path, headers={"Range": value})

    def test_head_has_length_no_body(self):
        response = self.daemon.request("HEAD", self.path)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-length"), str(len(self.data)))
        self.assertEqual(response.body, b"")

    def test_range_middle(self):
        response = self.get_range("bytes=100-199")
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, self.data[100:200])
        self.assertEqual(response.header("content-range"), "bytes 100-199/%d" % len(self.data))

    def test_range_open_end(self):
        response = self.get_range("bytes=10000-")
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, self.data[10000:])

    def test_range_suffix(self):
        response = self.get_range("bytes=-7")
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, self.data[-7:])

    def test_range_past_end_416(self):
        response = self.get_range("bytes=%d-" % len(self.data))
        self.assertEqual(response.status, 416)
        self.assertEqual(response.header("content-range"), "bytes */%d" % len(self.data))

    def test_several_ranges_send_whole(self):
        response = self.get_range("bytes=0-1,5-6")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, self.data)

    def test_etag_revalidation_304(self):
        response = self.daemon.request("GET", self.path,
                                       headers={"If-None-Match": '"%s"' % self.digest})
        self.assertEqual(response.status, 304)
        self.assertEqual(response.body, b"")

    def test_every_response_carries_serial(self):
        responses = [self.daemon.request("GET", self.path),
                     self.daemon.request("HEAD", self.path),
                     self.get_range("bytes=0-9"),
                     self.get_range("bytes=999999-"),
                     self.daemon.request("GET", self.path,
                                         headers={"If-None-Match": '"%s"' % self.digest}),
                     self.daemon.request("GET", "/api/blobs/sha256/" + "e" * 64),
                     self.daemon.put_blob(b"x", None)]
        self.assertEqual([r.status for r in responses], [200, 200, 206, 416, 304, 404, 401])
        for response in responses:
            self.assertEqual(response.header("x-registry-serial"), "0")
            self.assertTrue(response.header("x-request-id"))

    def test_unknown_blob_404(self):
        self.assertProblem(self.daemon.request("GET", "/api/blobs/sha256/" + "e" * 64), 404,
                           "blob_not_found")

    def test_length_above_4gib(self):
        # A sparse file registered straight in the catalog: serving must not truncate the
        # 64-bit length or offsets. The digest is a placeholder, since GET does not rehash.
        size = 4294967396
        digest = "f" * 64
        with open(self.daemon.blob_path(digest), "wb") as f:
            f.seek(size - 4)
            f.write(b"tail")
        db = self.daemon.catalog()
        db.execute("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, 0)", (digest, size))
        db.commit()
        db.close()
        path = "/api/blobs/sha256/" + digest
        head = self.daemon.request("HEAD", path)
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-length"), str(size))
        tail = self.daemon.request("GET", path, headers={"Range": "bytes=4294967392-"})
        self.assertEqual(tail.status, 206)
        self.assertEqual(tail.body, b"tail")
        self.assertEqual(tail.header("content-range"), "bytes 4294967392-4294967395/%d" % size)


if __name__ == "__main__":
    regtest.main()
