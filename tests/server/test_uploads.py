#!/usr/bin/env python3
"""Resumable uploads: chunks in order, repeated or out-of-order chunks, cut-off chunks."""

import os
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import DaemonTest, sha256_hex, wait_until  # noqa: E402

MIB = 1 << 20


class UploadTest(DaemonTest):
    def setUp(self):
        super().setUp()
        self.data = os.urandom(3 * MIB + 12345)
        self.digest = sha256_hex(self.data)

    def start_upload(self, token=None):
        response = self.daemon.request("POST", "/api/uploads", token=token or self.token)
        self.assertEqual(response.status, 201, response.body)
        return response.json()["url"]

    def patch(self, url, start, end, token=None):
        return self.daemon.request("PATCH", url, body=self.data[start:end + 1],
                                   token=token or self.token,
                                   headers={"Content-Range": "bytes %d-%d/*" % (start, end)})

    def finish(self, url, digest=None):
        return self.daemon.request("PUT", url + "?digest=sha256:" + (digest or self.digest),
                                   token=self.token)

    def received(self, url):
        return self.daemon.request("GET", url, token=self.token).json()["received"]

    def test_chunks_in_order_complete(self):
        url = self.start_upload()
        for start in range(0, len(self.data), MIB):
            end = min(start + MIB, len(self.data)) - 1
            response = self.patch(url, start, end)
            self.assertEqual(response.status, 202, response.body)
            self.assertEqual(response.json()["received"], end + 1)
        response = self.finish(url)
        self.assertEqual(response.status, 201, response.body)
        blob = self.daemon.request("GET", "/api/blobs/sha256/" + self.digest)
        self.assertEqual(blob.body, self.data)
        self.assertEqual(self.daemon.request("GET", url, token=self.token).status, 404)
        self.assertEqual(os.listdir(os.path.join(self.daemon.data_dir, "uploads")), [])

    # The response to a rejected chunk comes before its body is read and the connection closes, so
    # these chunks are small enough to be sent whole before the response arrives.
    def test_chunk_sent_twice_416(self):
        url = self.start_upload()
        self.assertEqual(self.patch(url, 0, 999).status, 202)
        self.assertProblem(self.patch(url, 0, 999), 416, "upload_offset_mismatch")
        self.assertEqual(self.received(url), 1000)

    def test_chunk_out_of_order_416(self):
        url = self.start_upload()
        problem = self.assertProblem(self.patch(url, 1000, 1999), 416,
                                     "upload_offset_mismatch")
        self.assertIn("starts at 0", problem["detail"])
        self.assertEqual(self.received(url), 0)

    def test_final_digest_decides(self):
        url = self.start_upload()
        self.assertEqual(self.patch(url, 0, MIB - 1).status, 202)
        wrong = sha256_hex(b"other")
        problem = self.assertProblem(self.finish(url, wrong), 400, "digest_mismatch")
        self.assertIn(sha256_hex(self.data[:MIB]), problem["detail"])
        self.assertEqual(self.daemon.request("GET", "/api/blobs/sha256/" + wrong).status, 404)
        self.assertEqual(self.daemon.request("GET", url, token=self.token).status, 404)

    def test_cut_off_chunk_then_resume(self):
        url = self.start_upload()
        self.assertEqual(self.patch(url, 0, MIB - 1).status, 202)
        sock = self.daemon.connect()
        head = ("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Range: bytes %d-%d/*\r\nContent-Length: %d\r\n\r\n"
                % (url, self.token, MIB, 3 * MIB - 1, 2 * MIB))
        sock.sendall(head.encode() + b"\xff" * (MIB // 2))
        time.sleep(0.2)
        sock.close()
        self.assertTrue(wait_until(lambda: "ended early" in self.daemon.log()))
        self.assertEqual(self.received(url), MIB)
        self.assertEqual(self.patch(url, MIB, len(self.data) - 1).status, 202)
        self.assertEqual(self.finish(url).status, 201)
        blob = self.daemon.request("GET", "/api/blobs/sha256/" + self.digest)
        self.assertEqual(blob.body, self.data)

    def open_chunk(self, url, start, end, body):
        """Sends the headers of a PATCH for bytes start-end and `body`, the first part of
        its body, and returns the socket, so the caller sends the rest later."""
        sock = self.daemon.connect()
        head = ("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Range: bytes %d-%d/*\r\nContent-Length: %d\r\n\r\n"
                % (url, self.token, start, end, end - start + 1))
        sock.sendall(head.encode() + body)
        return sock

    def read_status(self, sock):
        reply = b""
        while b"\r\n" not in reply:
            piece = sock.recv(4096)
            if not piece:
                break
            reply += piece
        sock.close()
        return int(reply.split(b" ")[1])

    def pause_for_daemon(self):
        """Gives the daemon time to read what was sent on an open socket."""
        time.sleep(0.3)

    def test_chunk_after_finish_leaves_blob(self):
        data = self.data[:1000]
        url = self.start_upload()
        self.assertEqual(self.patch(url, 0, 999).status, 202)
        sock = self.open_chunk(url, 1000, 1009, b"x" * 5)
        self.pause_for_daemon()
        response = self.finish(url, sha256_hex(data))
        self.assertEqual(response.status, 201, response.body)

        sock.sendall(b"y" * 5)
        status = self.read_status(sock)
        path = self.daemon.blob_path(sha256_hex(data))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(status, 404)
        self.assertEqual(os.stat(path).st_mode & 0o222, 0)
        blob = self.daemon.request("GET", "/api/blobs/sha256/" + sha256_hex(data))
        self.assertEqual(blob.status, 200)
        self.assertEqual(blob.body, data)
        self.assertTrue(wait_until(lambda: self.daemon.tmp_files() == []))

    def test_losing_chunk_keeps_winner_bytes(self):
        url = self.start_upload()
        size = 100000
        loser = self.open_chunk(url, 0, size - 1, b"\xff" * (size // 2))
        self.pause_for_daemon()
        self.assertEqual(self.patch(url, 0, size - 1).status, 202)

        loser.sendall(b"\xff" * (size - size // 2))
        self.assertEqual(self.read_status(loser), 409)
        self.assertEqual(self.received(url), size)
        response = self.finish(url, sha256_hex(self.data[:size]))
        self.assertEqual(response.status, 201, response.body)
        blob = self.daemon.request("GET", "/api/blobs/sha256/" + sha256_hex(self.data[:size]))
        self.assertEqual(blob.body, self.data[:size])

    def test_concurrent_finishes_one_201(self):
        url = self.start_upload()
        self.assertEqual(self.patch(url, 0, len(self.data) - 1).status, 202)
        statuses = []

        def finish():
            statuses.append(self.finish(url).status)

        threads = [threading.Thread(target=finish) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(sorted(statuses), [201, 404, 404, 404])
        blob = self.daemon.request("GET", "/api/blobs/sha256/" + self.digest)
        self.assertEqual(blob.body, self.data)
        self.assertEqual(os.listdir(os.path.join(self.daemon.data_dir, "uploads")), [])

    def test_missing_content_range_400(self):
        url = self.start_upload()
        response = self.daemon.request("PATCH", url, body=b"abc", token=self.token)
        self.assertProblem(response, 400, "invalid_content_range")

    def test_other_token_sees_nothing(self):
        url = self.start_upload()
        response = self.patch(url, 0, 9, token=self.other_token)
        self.assertProblem(response, 404, "upload_not_found")
        self.assertProblem(self.daemon.request("POST", "/api/uploads"), 401, "token_missing")


class UploadLimitTest(DaemonTest):
    daemon_args = ("--max-open-uploads", "2", "--upload-expiry", "2")

    def start_upload(self, token):
        return self.daemon.request("POST", "/api/uploads", token=token)

    def upload_files(self):
        return os.listdir(os.path.join(self.daemon.data_dir, "uploads"))

    def test_open_uploads_capped_per_token(self):
        self.assertEqual(self.start_upload(self.token).status, 201)
        self.assertEqual(self.start_upload(self.token).status, 201)
        problem = self.assertProblem(self.start_upload(self.token), 429, "too_many_uploads")
        self.assertIn("--max-open-uploads", problem["detail"])
        self.assertEqual(len(self.upload_files()), 2)
        self.assertEqual(self.start_upload(self.other_token).status, 201)

    def test_finished_upload_frees_slot(self):
        data = b"chunk"
        url = self.start_upload(self.token).json()["url"]
        self.assertEqual(self.start_upload(self.token).status, 201)
        response = self.daemon.request("PATCH", url, body=data, token=self.token,
                                       headers={"Content-Range": "bytes 0-4/*"})
        self.assertEqual(response.status, 202)
        response = self.daemon.request("PUT", url + "?digest=sha256:" + sha256_hex(data),
                                       token=self.token)
        self.assertEqual(response.status, 201)
        self.assertEqual(self.start_upload(self.token).status, 201)

    def test_idle_upload_expires(self):
        url = self.start_upload(self.token).json()["url"]
        self.assertTrue(wait_until(lambda: self.upload_files() == [], timeout=8))
        self.assertProblem(self.daemon.request("GET", url, token=self.token), 404,
                           "upload_not_found")
        self.assertEqual(self.start_upload(self.token).status, 201)
        self.assertEqual(self.start_upload(self.token).status, 201)

    def test_expired_upload_removed_at_start(self):
        self.daemon.stop()
        self.daemon.args = ["--upload-expiry", "3600"]
        self.daemon.start()
        url = self.start_upload(self.token).json()["url"]
        stray = os.path.join(self.daemon.data_dir, "uploads", "stray")
        open(stray, "wb").close()
        self.daemon.stop()
        db = self.daemon.catalog()
        db.execute("UPDATE uploads SET updated_at = updated_at - 7200")
        db.commit()
        db.close()

        self.daemon.start()
        self.assertEqual(self.upload_files(), [])
        self.assertProblem(self.daemon.request("GET", url, token=self.token), 404,
                           "upload_not_found")


if __name__ == "__main__":
    regtest.main()
