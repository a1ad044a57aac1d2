#!/usr/bin/env python3
"""ucregd basics: settings, health, errors, shutdown, tokens and the libmicrohttpd check."""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402
from regtest import Daemon, DaemonTest  # noqa: E402


class CommandLineTest(DaemonTest):
    def test_help_lists_options_and_variables(self):
        result = subprocess.run([regtest.UCREGD, "--help"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0)
        for word in ("--listen", "--data-dir", "--workers", "--max-blob-size", "--static-dir",
                     "UCREG_LISTEN", "UCREG_DATA_DIR", "token create"):
            self.assertIn(word, result.stdout)

    def test_bad_workers_value_named(self):
        result = subprocess.run([regtest.UCREGD, "--workers", "many"], capture_output=True,
                                text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("'many'", result.stderr)
        self.assertIn("--workers", result.stderr)

    def test_bad_environment_value_named(self):
        env = dict(os.environ, UCREG_MAX_BLOB_SIZE="12Q")
        result = subprocess.run([regtest.UCREGD, "token", "list"], capture_output=True, text=True,
                                env=env)
        self.assertEqual(result.returncode, 2)
        self.assertIn("UCREG_MAX_BLOB_SIZE", result.stderr)

    def test_listen_from_environment(self):
        daemon = Daemon()
        self.addCleanup(daemon.close)
        daemon.start(listen_by_env=True)
        self.assertEqual(daemon.request("GET", "/healthz").status, 200)


class HealthAndErrorsTest(DaemonTest):
    def test_healthz_carries_serial(self):
        response = self.daemon.request("GET", "/healthz")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["status"], "ok")
        self.assertEqual(response.header("x-registry-serial"), "0")

    def test_unknown_path_is_problem(self):
        response = self.daemon.request("GET", "/api/nothing")
        self.assertProblem(response, 404, "not_found")
        self.assertIsNotNone(response.header("x-registry-serial"))

    def test_wrong_method_lists_allowed(self):
        response = self.daemon.request("DELETE", "/healthz")
        self.assertProblem(response, 405, "method_not_allowed")
        self.assertIn("GET", response.header("allow"))

    def test_metrics_prometheus_text(self):
        self.daemon.request("GET", "/healthz")
        response = self.daemon.request("GET", "/metrics")
        self.assertEqual(response.status, 200)
        text = response.body.decode()
        self.assertIn('ucreg_http_requests_total{code="2xx"}', text)
        self.assertIn('ucreg_jobs{state="queued"} 0', text)
        self.assertIn("ucreg_verify_seconds_count", text)

    def test_catalog_uses_wal_and_migrations(self):
        db = self.daemon.catalog()
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertGreaterEqual(db.execute("PRAGMA user_version").fetchone()[0], 1)

    def test_sigterm_stops_cleanly(self):
        self.assertEqual(self.daemon.stop(signal.SIGTERM), 0)
        self.assertIn("received SIGTERM", self.daemon.log())
        self.assertIn("stopped", self.daemon.log())

    def test_sigint_stops_cleanly(self):
        self.assertEqual(self.daemon.stop(signal.SIGINT), 0)
        self.assertIn("received SIGINT", self.daemon.log())


class SlowClientTest(DaemonTest):
    def test_slow_clients_do_not_starve_others(self):
        # Clients that stall halfway through their headers or trickle an upload hold only
        # a socket each; requests from other clients are still served at once.
        stalled = []
        for _ in range(40):
            sock = self.daemon.connect()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            stalled.append(sock)
        trickle = self.daemon.connect()
        trickle.sendall(("PUT /api/blobs/sha256/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Authorization: Bearer %s\r\nContent-Length: 1000000\r\n\r\n"
                         % ("2" * 64, self.token)).encode() + b"x" * 100)
        stalled.append(trickle)
        try:
            for _ in range(20):
                started = time.monotonic()
                response = self.daemon.request("GET", "/healthz", timeout=5)
                self.assertEqual(response.status, 200)
                self.assertLess(time.monotonic() - started, 1.0)
        finally:
            for sock in stalled:
                sock.close()


class MultipartTest(DaemonTest):
    def send_raw(self, raw):
        sock = self.daemon.connect()
        try:
            sock.sendall(raw)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            sock.close()

    def test_nul_boundary_rejected_then_next_request_works(self):
        body = b"--a\x00b\r\ncontent-disposition: form-data; name=x\r\n\r\n1\r\n--a\x00b--\r\n"
        raw = (b"PUT /api/blobs/sha256/" + b"0" * 64 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Authorization: Bearer " + self.token.encode() + b"\r\n"
               b"Content-Type: multipart/form-data; boundary=a\x00b\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        reply = self.send_raw(raw)
        self.assertTrue(reply.startswith(b"HTTP/1.1 400"), reply[:200])
        self.assertEqual(self.daemon.request("GET", "/healthz").status, 200)
        self.assertEqual(self.daemon.tmp_files(), [])

    def test_valid_multipart_unsupported(self):
        response = self.daemon.request(
            "PUT", "/api/blobs/sha256/" + "0" * 64, body=b"--xyz--\r\n", token=self.token,
            headers={"Content-Type": "multipart/form-data; boundary=xyz"})
        self.assertProblem(response, 415, "unsupported_media_type")

    def test_binary_imports_no_post_processor(self):
        # MHD's PostProcessor carries CVE-2023-27371 before 0.9.76 (Debian 12 backports the
        # fix in 0.9.75-6). ucregd never calls it, so no libmicrohttpd build can expose it.
        with open(regtest.UCREGD, "rb") as f:
            binary = f.read()
        self.assertIn(b"MHD_start_daemon", binary)
        self.assertNotIn(b"MHD_create_post_processor", binary)
        self.assertNotIn(b"MHD_post_process", binary)


class StaticTest(DaemonTest):
    def setUp(self):
        super().setUp()
        self.daemon.stop()
        self.site = os.path.join(self.daemon.dir, "site")
        os.makedirs(self.site)
        with open(os.path.join(self.site, "index.html"), "w") as f:
            f.write("<!doctype html><title>registry</title>")
        with open(os.path.join(self.site, "app.js"), "w") as f:
            f.write("console.log(1);")
        with open(os.path.join(self.site, ".secret"), "w") as f:
            f.write("hidden")
        self.site_daemon = Daemon("--static-dir", self.site)
        self.addCleanup(self.site_daemon.close)
        self.site_daemon.start()

    def test_index_and_files_served(self):
        index = self.site_daemon.request("GET", "/")
        self.assertEqual(index.status, 200)
        self.assertIn(b"registry", index.body)
        self.assertTrue(index.header("content-type").startswith("text/html"))
        script = self.site_daemon.request("GET", "/app.js")
        self.assertEqual(script.body, b"console.log(1);")
        self.assertTrue(script.header("content-type").startswith("text/javascript"))

    def test_hidden_and_escaping_paths_refused(self):
        self.assertEqual(self.site_daemon.request("GET", "/.secret").status, 404)
        self.assertEqual(self.site_daemon.request("GET", "/../etc/passwd").status, 400)
        self.assertEqual(self.site_daemon.request("GET", "/%2e%2e/etc/passwd").status, 400)
        self.assertEqual(self.site_daemon.request("GET", "/missing.html").status, 404)

    def test_api_paths_not_static(self):
        self.assertProblem(self.site_daemon.request("GET", "/api/nothing"), 404, "not_found")


class TokenTest(DaemonTest):
    def test_create_prints_token_last(self):
        result = self.daemon.run("token", "create", "--name", "carol", "--scope", "admin")
        self.assertEqual(result.returncode, 0, result.stderr)
        token = result.stdout.strip().splitlines()[-1]
        self.assertRegex(token, r"^ucr_[0-9a-f]{64}$")

    def test_list_shows_names_not_secrets(self):
        result = self.daemon.run("token", "list")
        self.assertEqual(result.returncode, 0)
        self.assertIn("alice", result.stdout)
        self.assertIn("admin", result.stdout)
        self.assertNotIn(self.token, result.stdout)

    def test_secret_stored_only_hashed(self):
        self.daemon.put_blob(b"x", self.token)
        with open(os.path.join(self.daemon.data_dir, "catalog.sqlite3"), "rb") as f:
            self.assertNotIn(self.token.encode(), f.read())
        self.assertNotIn(self.token, self.daemon.log())

    def test_revoked_token_rejected(self):
        result = self.daemon.run("token", "revoke", "1")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertProblem(self.daemon.put_blob(b"abc", self.token), 401, "token_invalid")

    def test_revoke_unknown_id_fails(self):
        result = self.daemon.run("token", "revoke", "99")
        self.assertEqual(result.returncode, 1)
        self.assertIn("99", result.stderr)

    def test_create_rejects_bad_scope(self):
        result = self.daemon.run("token", "create", "--name", "x", "--scope", "root")
        self.assertEqual(result.returncode, 2)
        self.assertIn("'root'", result.stderr)


if __name__ == "__main__":
    regtest.main()
