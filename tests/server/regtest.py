"""Helpers for the ucregd integration tests: start a real daemon from the build tree on a
free loopback port with a scratch data directory, and talk HTTP to it.

Standard library only. The build tree comes from UC_TOP_BUILDDIR, which `make check` sets.
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import unittest

BUILD_DIR = os.environ.get("UC_TOP_BUILDDIR", os.getcwd())
SOURCE_DIR = os.environ.get("UC_TOP_SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
UCREGD = os.path.join(BUILD_DIR, "server", "ucregd")
START_TIMEOUT = 10.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)


class Daemon:
    """One ucregd process with its own data directory, removed by close()."""

    def __init__(self, *args, env=None, workers=1):
        self.dir = tempfile.mkdtemp(prefix="ucregd-test-")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "ucregd.log")
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.workers = workers
        self.proc = None
        self.port = None

    def command(self, *args):
        return [UCREGD, "--data-dir", self.data_dir, *args]

    def run(self, *args):
        """Runs ucregd with a subcommand and returns the CompletedProcess."""
        return subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env,
                              timeout=30)

    def create_token(self, name, scope="push"):
        result = self.run("token", "create", "--name", name, "--scope", scope)
        if result.returncode != 0:
            raise AssertionError("token create failed: " + result.stderr)
        return result.stdout.strip().splitlines()[-1]

    def start(self, listen_by_env=False):
        args = ["--workers", str(self.workers), "--log-level", "debug", *self.args]
        if listen_by_env:
            self.env["UCREG_LISTEN"] = "127.0.0.1:0"
        else:
            args = ["--listen", "127.0.0.1:0", *args]
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(*args), stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(r"listening on \S+ \(port (\d+)\)", self.log())
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                raise AssertionError("ucregd exited at start:\n" + self.log())
            time.sleep(0.02)
        raise AssertionError("ucregd did not start listening:\n" + self.log())

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Sends `sig` and returns the exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        self.log_file.close()
        return code

    def close(self):
        """Stops the daemon with SIGTERM, so a sanitizer build reports leaks, and raises
        when the log shows a sanitizer finding or the daemon did not exit cleanly."""
        code = 0
        if self.proc is not None:
            try:
                code = self.stop(signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                self.log_file.close()
                code = "killed after SIGTERM timed out"
        log = self.log() if os.path.exists(self.log_path) else ""
        shutil.rmtree(self.dir, ignore_errors=True)
        for marker in SANITIZER_MARKERS:
            if marker in log:
                start = log.index(marker)
                raise AssertionError("sanitizer finding in ucregd:\n" + log[start:start + 4000])
        if code != 0:
            raise AssertionError("ucregd exited with %s:\n%s" % (code, log[-2000:]))

    def request(self, method, path, body=None, headers=None, token=None, timeout=30):
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def catalog(self):
        db = sqlite3.connect(os.path.join(self.data_dir, "catalog.sqlite3"), timeout=10)
        return db

    def blob_path(self, hex_digest):
        return os.path.join(self.data_dir, "blobs", "sha256", hex_digest)

    def tmp_files(self):
        return sorted(os.listdir(os.path.join(self.data_dir, "tmp")))

    def put_blob(self, data, token, digest=None):
        return self.request("PUT", "/api/blobs/sha256/" + (digest or sha256_hex(data)), body=data,
                            token=token)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class DaemonTest(unittest.TestCase):
    """Starts one daemon per test with a push token `self.token` and an admin token."""

    daemon_args = ()

    def setUp(self):
        self.daemon = Daemon(*self.daemon_args)
        self.addCleanup(self.daemon.close)
        # Creating the tokens first also applies the migrations.
        self.token = self.daemon.create_token("alice", "push")
        self.other_token = self.daemon.create_token("bob", "push")
        self.admin_token = self.daemon.create_token("root", "admin")
        self.daemon.start()

    def assertProblem(self, response, status, code):
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.header("content-type"), "application/problem+json")
        problem = response.json()
        self.assertEqual(problem["code"], code)
        self.assertEqual(problem["status"], status)
        self.assertTrue(problem["detail"])
        self.assertTrue(problem["title"])
        self.assertEqual(problem["type"], "urn:uc-registry:problem:" + code)
        return problem


def main():
    if not os.path.exists(UCREGD):
        print("ucregd is not built at " + UCREGD)
        raise SystemExit(77)
    unittest.main(verbosity=2)


MAKE_PACK = os.path.join(BUILD_DIR, "tests", "server", "make_pack")
DATA_DIR = os.environ.get("UC_DATA_DIR", os.path.join(SOURCE_DIR, "..", "shared", "data"))


def make_pack(out_dir, source="stories260K.safetensors", family="dense"):
    """Writes a real pack of `source` from UC_DATA_DIR and returns (manifest bytes, shards)
    where shards maps each digest to its bytes."""
    subprocess.run([MAKE_PACK, os.path.join(DATA_DIR, source), out_dir, family], check=True,
                   capture_output=True)
    with open(os.path.join(out_dir, "manifest.json"), "rb") as f:
        manifest = f.read()
    shards = {}
    for shard in json.loads(manifest)["shards"]:
        with open(os.path.join(out_dir, shard["file"]), "rb") as f:
            shards[shard["sha256"]] = f.read()
    return manifest, shards


def wait_for_job(daemon, job_url, timeout=30.0):
    """Polls a job until it is done or failed and returns its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = daemon.request("GET", job_url).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("job %s did not finish:\n%s" % (job_url, daemon.log()))
