#!/usr/bin/env python3
"""ucregd under hostile requests: bytes that are not UTF-8, characters cut by a length
limit, conflicting framing headers and out-of-range numbers. Each case checks that the
daemon sends problem+json naming the bad value, stays up and does not flood its log."""

import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import DaemonTest  # noqa: E402

# Bytes the log may grow by for one rejected request; a handler that spins grows it by
# megabytes per second.
LOG_GROWTH_LIMIT = 8192


def parse_response(data):
    """Splits raw response bytes into (status, lowercase headers, body)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


class HostileRequestTest(DaemonTest):
    def send_raw(self, data, timeout=5):
        """Sends raw request bytes and returns every byte read until the server closes
        the connection or `timeout` seconds pass without data."""
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=timeout) as s:
            s.sendall(data)
            received = b""
            while True:
                try:
                    piece = s.recv(65536)
                except socket.timeout:
                    break
                if not piece:
                    break
                received += piece
            return received

    def log_size(self):
        return os.path.getsize(self.daemon.log_path)

    def assertRawProblem(self, data, status, code):
        """Sends `data` and checks the one problem+json response; returns its detail."""
        log_before = self.log_size()
        received = self.send_raw(data)
        self.assertTrue(received, "no response to %r" % data[:80])
        got_status, headers, body = parse_response(received)
        self.assertEqual(got_status, status, received[:300])
        self.assertEqual(headers.get("content-type"), "application/problem+json")
        problem = json.loads(body)
        self.assertEqual(problem["code"], code)
        self.assertEqual(self.daemon.request("GET", "/healthz").status, 200)
        self.assertLess(self.log_size() - log_before, LOG_GROWTH_LIMIT)
        return problem["detail"]

    def test_invalid_utf8_path_answered(self):
        detail = self.assertRawProblem(
            b"GET /api/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found")
        self.assertIn("/api/\\xFF", detail)

    def test_invalid_utf8_dot_segment(self):
        detail = self.assertRawProblem(
            b"GET /\xff/.. HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, "invalid_path")
        self.assertIn("\\xFF", detail)

    def test_invalid_utf8_method_answered(self):
        detail = self.assertRawProblem(
            b"G\xffT /api/packs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405,
            "method_not_allowed")
        self.assertIn("G\\xFFT", detail)

    def test_character_cut_by_limit(self):
        path = b"/api/" + b"a" * 194 + "é".encode() + b"/.."
        detail = self.assertRawProblem(
            b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400,
            "invalid_path")
        self.assertIn("a" * 194, detail)

    def test_slug_cut_inside_character(self):
        log_before = self.log_size()
        response = self.daemon.request("GET", "/api/packs/" + "a" * 79 + "%C3%A9", timeout=5)
        self.assertProblem(response, 400, "invalid_slug")
        self.assertIn("a" * 79, response.json()["detail"])
        self.assertEqual(self.daemon.request("GET", "/healthz").status, 200)
        self.assertLess(self.log_size() - log_before, LOG_GROWTH_LIMIT)

    def test_percent_encoded_ff_rejected(self):
        cases = [
            ("/api/packs/%ff", 400, "invalid_slug"),
            ("/api/packs/s/versions/%ff", 400, "invalid_version"),
            ("/api/changes?since=%ff", 400, "invalid_query"),
            ("/api/packs?limit=%ff", 400, "invalid_query"),
            ("/api/packs?sort=%ff", 400, "invalid_query"),
            ("/api/blobs/sha256/%ff", 400, "invalid_digest"),
            ("/api/jobs/%ff", 400, "invalid_job_id"),
        ]
        for path, status, code in cases:
            with self.subTest(path=path):
                log_before = self.log_size()
                response = self.daemon.request("GET", path, timeout=5)
                problem = self.assertProblem(response, status, code)
                self.assertIn("\\xFF", problem["detail"])
                self.assertLess(self.log_size() - log_before, LOG_GROWTH_LIMIT)
        response = self.daemon.request("GET", "/api/uploads/%ff", token=self.token, timeout=5)
        self.assertProblem(response, 400, "invalid_upload_id")
        self.assertEqual(self.daemon.request("GET", "/healthz").status, 200)

    def assertFramingRejected(self, request):
        """Checks that `request` gets one 400 and a closed connection, so bytes after its
        first framing are never parsed as a second request."""
        received = self.send_raw(request)
        self.assertEqual(received.count(b"HTTP/1.1 "), 1, received)
        status, headers, body = parse_response(received)
        self.assertEqual(status, 400, received)
        self.assertEqual(headers.get("connection"), "close")
        self.assertEqual(json.loads(body)["code"], "ambiguous_body_length")
        self.assertEqual(self.daemon.request("GET", "/healthz").status, 200)
        return json.loads(body)["detail"]

    def test_conflicting_content_lengths(self):
        body = b'{"reason":"ab"}GET /api/packs/zz HTTP/1.1\r\nHost: x\r\n\r\n'
        detail = self.assertFramingRejected(
            b"POST /api/packs/zz/versions/r1/yank HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + self.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 16\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        self.assertIn("2 Content-Length", detail)

    def test_duplicate_content_lengths(self):
        self.assertFramingRejected(
            b"POST /api/packs/zz/versions/r1/yank HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}")

    def test_content_length_with_chunked(self):
        detail = self.assertFramingRejected(
            b"POST /api/packs/zz/versions/r1/yank HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\nGET /api/packs/zz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn("Transfer-Encoding", detail)

    def test_out_of_range_numbers_rejected(self):
        cases = [
            ("/api/changes?since=99999999999999999999", "invalid_query", "since="),
            ("/api/changes?limit=0", "invalid_query", "from 1 to 1000"),
            ("/api/jobs/99999999999999999999", "invalid_job_id", "99999999999999999999"),
            ("/api/jobs/%2012", "invalid_job_id", "' 12'"),
            ("/api/packs?limit=%2010", "invalid_query", "limit=' 10'"),
        ]
        for path, code, named in cases:
            with self.subTest(path=path):
                problem = self.assertProblem(self.daemon.request("GET", path), 400, code)
                self.assertIn(named, problem["detail"])

    def test_trailing_slash_rejected(self):
        problem = self.assertProblem(self.daemon.request("GET", "/index.html/"), 400,
                                     "invalid_path")
        self.assertIn("/index.html/", problem["detail"])
        self.assertProblem(self.daemon.request("GET", "/api/packs/"), 400, "invalid_path")

    def test_unsatisfiable_range_is_problem(self):
        data = b"hostile range test blob"
        self.assertEqual(self.daemon.put_blob(data, self.token).status, 201)
        path = "/api/blobs/sha256/" + regtest.sha256_hex(data)
        for first in ("99999999999999999999999", str(len(data))):
            with self.subTest(first=first):
                response = self.daemon.request("GET", path, headers={"Range": "bytes=%s-" % first})
                problem = self.assertProblem(response, 416, "range_not_satisfiable")
                self.assertIn(first, problem["detail"])
                self.assertEqual(response.header("content-range"), "bytes */%d" % len(data))
        response = self.daemon.request("GET", path,
                                       headers={"Range": "bytes=2-99999999999999999999999"})
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, data[2:])

    def test_chunked_json_over_limit(self):
        chunk = b"x" * (1 << 20)
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
        received = self.send_raw(
            b"POST /api/packs/zz/versions/r1/evaluations HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + self.token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
            timeout=20)
        self.assertTrue(received, "no response to a chunked body over 16 MiB")
        status, headers, body = parse_response(received)
        self.assertEqual(status, 413, received[:300])
        self.assertEqual(headers.get("content-type"), "application/problem+json")
        problem = json.loads(body)
        self.assertEqual(problem["code"], "body_too_large")
        self.assertIn("16777216-byte limit", problem["detail"])
        self.assertEqual(self.daemon.request("GET", "/healthz").status, 200)

    def test_max_content_length_blob_put(self):
        digest = "0" * 64
        detail = self.assertRawProblem(
            b"PUT /api/blobs/sha256/" + digest.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + self.token.encode() + b"\r\n"
            b"Content-Length: 18446744073709551615\r\n\r\n", 413, "body_too_large")
        self.assertIn("18446744073709551615", detail)

    def test_other_transfer_coding_rejected(self):
        detail = self.assertRawProblem(
            b"POST /api/packs/zz/versions/r1/yank HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + self.token.encode() + b"\r\n"
            b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501,
            "unsupported_transfer_encoding")
        self.assertIn("'gzip, chunked'", detail)


if __name__ == "__main__":
    regtest.main()
