"""Integration tests of `uc push` and `uc pull` against a real ucregd on a loopback port:
round trips of real packs, skipped uploads, tokens, interrupted transfers that resume,
and a corrupted blob that pull must reject."""

import array
import filecmp
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402

UC = os.path.join(regtest.BUILD_DIR, "cli", "uc")
COMMAND_TIMEOUT = 120
# The big pack's raw f32 tensor: 10 copies of 1 Mi Gaussian values, about 40 MB.
BIG_BLOCK_VALUES = 1 << 20
BIG_BLOCKS = 10


def write_gaussian_safetensors(path, seed=1):
    """Writes a safetensors file with a 1-D Gaussian f32 tensor of about 40 MB, which a
    pack stores raw, and a small 64x64 matrix, which it encodes."""
    rng = random.Random(seed)
    block = array.array("f", [rng.gauss(0.0, 0.02) for _ in range(BIG_BLOCK_VALUES)]).tobytes()
    small = array.array("f", [rng.gauss(0.0, 0.02) for _ in range(64 * 64)]).tobytes()
    big_len = len(block) * BIG_BLOCKS
    header = {
        "big.weight": {"dtype": "F32", "shape": [BIG_BLOCK_VALUES * BIG_BLOCKS],
                       "data_offsets": [0, big_len]},
        "proj.weight": {"dtype": "F32", "shape": [64, 64],
                        "data_offsets": [big_len, big_len + len(small)]},
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _ in range(BIG_BLOCKS):
            f.write(block)
        f.write(small)


class FaultProxy:
    """A loopback TCP proxy in front of the daemon that injects one fault: `cut_patch_after`
    closes the connection once that many bytes of a PATCH request went through,
    `drop_range` renames the Range request header so the daemon sends whole blobs, and
    `fake_blob_heads` responds to every HEAD of a blob with 200 as if the blob were stored."""

    def __init__(self, upstream_port, cut_patch_after=None, drop_range=False,
                 fake_blob_heads=False):
        self.upstream_port = upstream_port
        self.cut_patch_after = cut_patch_after
        self.drop_range = drop_range
        self.fake_blob_heads = fake_blob_heads
        self.cuts = 0
        self.ranges_dropped = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def close(self):
        self.closed = True
        self.listener.close()

    def accept_loop(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self.pipe, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self.forward_requests, args=(client, upstream),
                             daemon=True).start()

    @staticmethod
    def pipe(source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def forward_requests(self, client, upstream):
        patch_bytes = None
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if self.fake_blob_heads and data.startswith(b"HEAD /api/blobs/"):
                    client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    continue
                if self.drop_range and b"\r\nRange: " in data:
                    data = data.replace(b"\r\nRange: ", b"\r\nX-Nop: ")
                    with self.lock:
                        self.ranges_dropped += 1
                if (self.cut_patch_after is not None and patch_bytes is None
                        and b"PATCH /api/uploads/" in data):
                    patch_bytes = 0
                if patch_bytes is not None:
                    patch_bytes += len(data)
                    with self.lock:
                        cut = self.cuts == 0 and patch_bytes > self.cut_patch_after
                        if cut:
                            self.cuts += 1
                    if cut:
                        break
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def run_uc(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("UCREG_TOKEN", None)
    full_env.update(env or {})
    result = subprocess.run([UC, *args], capture_output=True, text=True, env=full_env,
                            timeout=COMMAND_TIMEOUT)
    for marker in regtest.SANITIZER_MARKERS:
        if marker in result.stderr:
            raise AssertionError("sanitizer finding in uc %s:\n%s" % (args[0], result.stderr))
    return result


def pack_files(pack_dir):
    return sorted(name for name in os.listdir(pack_dir) if not name.startswith("."))


class Packs:
    """Packs made once with `uc pack` from UC_DATA_DIR and shared by every test."""

    dir = None

    @classmethod
    def make(cls):
        if cls.dir:
            return
        cls.dir = tempfile.mkdtemp(prefix="uc-push-pull-")
        sources = {
            "stories": ("stories260K.safetensors", "dense"),
            "rwkv": ("tiny-rwkv-5v2-730K.safetensors", "recurrent"),
        }
        for name, (source, family) in sources.items():
            result = run_uc("pack", os.path.join(regtest.DATA_DIR, source), "-o",
                            cls.path(name), "--family", family)
            if result.returncode != 0:
                raise AssertionError("uc pack %s failed: %s" % (source, result.stderr))
        big_source = os.path.join(cls.dir, "big.safetensors")
        write_gaussian_safetensors(big_source)
        result = run_uc("pack", big_source, "-o", cls.path("big"), "--family", "other",
                        "--dtype", "f32")
        if result.returncode != 0:
            raise AssertionError("uc pack of the big tensor failed: " + result.stderr)

    @classmethod
    def path(cls, name):
        return os.path.join(cls.dir, name)

    @classmethod
    def shard(cls, name):
        """Returns (digest, size) of a pack's only shard."""
        with open(os.path.join(cls.path(name), "manifest.json")) as f:
            manifest = json.load(f)
        shard = manifest["shards"][0]
        return shard["sha256"], shard["size"]

    @classmethod
    def remove(cls):
        if cls.dir:
            shutil.rmtree(cls.dir, ignore_errors=True)


class PushPullTest(regtest.DaemonTest):
    @classmethod
    def setUpClass(cls):
        Packs.make()

    def setUp(self):
        super().setUp()
        self.work = tempfile.mkdtemp(prefix="uc-push-pull-work-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.token_file = os.path.join(self.work, "token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        self.registry = "http://127.0.0.1:%d" % self.daemon.port

    def push(self, pack, slug, version="1", *extra, env=None):
        return run_uc("push", pack, "--registry", self.registry, "--slug", slug,
                      "--version", version, "--token-file", self.token_file, *extra, env=env)

    def pull(self, reference, out_dir, *extra):
        return run_uc("pull", reference, "--registry", self.registry, "-o", out_dir, *extra)

    def copy_pack(self, name):
        """Copies a shared pack so a test may add files to it."""
        target = os.path.join(self.work, name)
        shutil.copytree(Packs.path(name), target)
        return target

    def stored_blob_count(self):
        return self.daemon.log().count("stored blob") + self.daemon.log().count("stored as blob")

    def sent_bytes(self):
        metrics = self.daemon.request("GET", "/metrics").body.decode()
        return int(re.search(r"^ucreg_http_sent_bytes_total (\d+)$", metrics, re.M).group(1))

    def catalog_counts(self):
        db = self.daemon.catalog()
        try:
            return tuple(db.execute("SELECT count(*) FROM " + table).fetchone()[0]
                         for table in ("blobs", "packs", "versions"))
        finally:
            db.close()

    def assertSamePack(self, source, copy):
        self.assertEqual(pack_files(source), pack_files(copy))
        for name in pack_files(source):
            self.assertTrue(filecmp.cmp(os.path.join(source, name), os.path.join(copy, name),
                                        shallow=False), name)

    def test_push_verified(self):
        result = self.push(Packs.path("stories"), "stories260k")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("stories260k@1 verified", result.stdout)
        version = self.daemon.request("GET", "/api/packs/stories260k/versions/1").json()
        self.assertEqual(version["status"], "verified")

    def test_token_from_environment(self):
        result = run_uc("push", Packs.path("stories"), "--registry", self.registry, "--slug",
                        "stories260k", "--version", "1", env={"UCREG_TOKEN": self.token})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn(self.token, result.stdout + result.stderr)

    def test_second_push_uploads_no_shard(self):
        first = self.push(Packs.path("rwkv"), "rwkv")
        self.assertEqual(first.returncode, 0, first.stderr)
        stored = self.stored_blob_count()
        self.assertEqual(stored, 1)
        second = self.push(Packs.path("rwkv"), "rwkv", "2")
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertIn("uploaded 0 of 1 shards", second.stderr)
        self.assertEqual(self.stored_blob_count(), stored)
        self.assertEqual(self.daemon.log().count("PUT /api/blobs/"), 1)

    def test_pull_round_trip(self):
        for name in ("stories", "rwkv"):
            with self.subTest(pack=name):
                pushed = self.push(Packs.path(name), name)
                self.assertEqual(pushed.returncode, 0, pushed.stderr)
                out = os.path.join(self.work, "pulled-" + name)
                pulled = self.pull(name, out)
                self.assertEqual(pulled.returncode, 0, pulled.stderr)
                self.assertIn("%s@1 pulled" % name, pulled.stdout)
                verified = run_uc("verify", out)
                self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)
                self.assertSamePack(Packs.path(name), out)
                self.assertFalse(os.path.exists(out + ".uc-pull"))

    def test_pull_named_version(self):
        self.assertEqual(self.push(Packs.path("stories"), "stories260k", "1.0").returncode, 0)
        out = os.path.join(self.work, "named")
        result = self.pull("stories260k@1.0", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertSamePack(Packs.path("stories"), out)

    def test_push_without_token(self):
        result = run_uc("push", Packs.path("stories"), "--registry", self.registry, "--slug",
                        "stories260k", "--version", "1")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("UCREG_TOKEN", result.stderr)
        self.assertIn("--token-file", result.stderr)
        self.assertEqual(self.catalog_counts(), (0, 0, 0))

    def test_push_wrong_token(self):
        result = run_uc("push", Packs.path("stories"), "--registry", self.registry, "--slug",
                        "stories260k", "--version", "1", env={"UCREG_TOKEN": "not-a-token"})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("token is unknown or revoked", result.stderr)
        self.assertIn("HTTP 401", result.stderr)
        self.assertNotIn("not-a-token", result.stderr)
        self.assertEqual(self.catalog_counts(), (0, 0, 0))
        self.assertEqual(os.listdir(os.path.join(self.daemon.data_dir, "blobs", "sha256")), [])

    def test_push_invalid_pack(self):
        pack = self.copy_pack("stories")
        digest, size = Packs.shard("stories")
        with open(os.path.join(pack, digest), "r+b") as f:
            f.truncate(size - 1)
        result = self.push(pack, "stories260k")
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertIn(digest, result.stderr)
        self.assertNotIn("PUT /api", self.daemon.log())

    def test_push_reconstruction_failure(self):
        pack = self.copy_pack("stories")
        manifest_path = os.path.join(pack, "manifest.json")
        with open(manifest_path) as f:
            manifest = json.load(f)
        tensor = manifest["tensors"][0]
        tensor["sha256"] = ("0" if tensor["sha256"][0] != "0" else "1") + tensor["sha256"][1:]
        with open(manifest_path, "w") as f:
            json.dump(manifest, f, sort_keys=True, separators=(",", ":"))
        result = self.push(pack, "broken")
        self.assertEqual(result.returncode, 5, result.stderr)
        self.assertIn("reconstruction_failed", result.stderr)
        self.assertIn(tensor["name"], result.stderr)

    def test_push_missing_blobs_named(self):
        digest, _ = Packs.shard("stories")
        proxy = FaultProxy(self.daemon.port, fake_blob_heads=True)
        self.addCleanup(proxy.close)
        result = run_uc("push", Packs.path("stories"), "--registry",
                        "http://127.0.0.1:%d" % proxy.port, "--slug", "stories260k", "--version",
                        "1", "--token-file", self.token_file)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("uploaded 0 of 1 shards", result.stderr)
        self.assertIn(digest, result.stderr)
        self.assertIn("HTTP 409", result.stderr)
        self.assertEqual(self.catalog_counts(), (0, 0, 0))

    def test_push_no_wait(self):
        result = self.push(Packs.path("stories"), "stories260k", "1", "--no-wait")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("verification runs in the background", result.stdout)
        regtest.wait_until(lambda: self.daemon.request(
            "GET", "/api/packs/stories260k/versions/1").json()["status"] != "pending", 30)

    def test_pull_unknown_slug(self):
        out = os.path.join(self.work, "none")
        result = self.pull("no-such-pack", out)
        self.assertEqual(result.returncode, 1)
        self.assertIn("'no-such-pack'", result.stderr)
        self.assertIn("HTTP 404", result.stderr)
        self.assertFalse(os.path.exists(out))

    def test_pull_into_existing_dir(self):
        out = os.path.join(self.work, "exists")
        os.mkdir(out)
        result = self.pull("stories260k", out)
        self.assertEqual(result.returncode, 2)
        self.assertIn("already exists", result.stderr)
        self.assertEqual(os.listdir(out), [])

    def test_pull_corrupt_blob(self):
        self.assertEqual(self.push(Packs.path("stories"), "stories260k").returncode, 0)
        digest, size = Packs.shard("stories")
        with open(self.daemon.blob_path(digest), "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0x40]))
        out = os.path.join(self.work, "corrupt")
        result = self.pull("stories260k", out)
        self.assertEqual(result.returncode, 4, result.stderr)
        self.assertIn("integrity failure", result.stderr)
        self.assertIn(digest, result.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".uc-pull"))

    def kill_when(self, proc, predicate, event):
        """Kills `proc` with SIGKILL once `predicate` is true."""
        try:
            if not regtest.wait_until(predicate, 60):
                self.fail("%s did not happen; uc output: %s" % (event, proc.stderr.read()))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()

    def test_pull_resumes_interrupted_download(self):
        pushed = self.push(Packs.path("big"), "big", "1")
        self.assertEqual(pushed.returncode, 0, pushed.stderr)
        digest, size = Packs.shard("big")
        out = os.path.join(self.work, "big")
        partial = os.path.join(out + ".uc-pull", digest)
        proc = subprocess.Popen([UC, "pull", "big", "--registry", self.registry, "-o", out,
                                 "--limit-rate", "8M"], stderr=subprocess.PIPE, text=True)
        self.kill_when(proc, lambda: os.path.exists(partial) and os.path.getsize(partial) > size // 8,
                       "a partial shard")
        have = os.path.getsize(partial)
        self.assertLess(have, size)
        self.assertFalse(os.path.exists(out))

        sent_before = self.sent_bytes()
        result = self.pull("big", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stderr, r"resuming shard %s at byte [1-9]" % digest)
        self.assertLessEqual(self.sent_bytes() - sent_before, size - have + 65536)
        self.assertSamePack(Packs.path("big"), out)

    def start_partial_pull(self, out):
        """Creates OUT.uc-pull as an interrupted pull of the stories pack leaves it."""
        os.mkdir(out + ".uc-pull")
        shutil.copy(os.path.join(Packs.path("stories"), "manifest.json"), out + ".uc-pull")

    def test_pull_discards_oversized_partial(self):
        self.assertEqual(self.push(Packs.path("stories"), "stories260k").returncode, 0)
        digest, size = Packs.shard("stories")
        out = os.path.join(self.work, "stale")
        self.start_partial_pull(out)
        # A partial file longer than the shard cannot be a prefix of it.
        with open(os.path.join(out + ".uc-pull", digest), "wb") as f:
            f.write(b"\0" * (size + 10))
        result = self.pull("stories260k", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("resuming", result.stderr)
        self.assertSamePack(Packs.path("stories"), out)

    def test_pull_restarts_when_range_ignored(self):
        self.assertEqual(self.push(Packs.path("stories"), "stories260k").returncode, 0)
        digest, size = Packs.shard("stories")
        proxy = FaultProxy(self.daemon.port, drop_range=True)
        self.addCleanup(proxy.close)
        out = os.path.join(self.work, "whole")
        self.start_partial_pull(out)
        # A wrong prefix: only a restart from byte 0 gives the right shard.
        with open(os.path.join(out + ".uc-pull", digest), "wb") as f:
            f.write(b"\xff" * (size // 2))
        result = run_uc("pull", "stories260k", "--registry", "http://127.0.0.1:%d" % proxy.port,
                        "-o", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("resuming shard %s at byte %d" % (digest, size // 2), result.stderr)
        self.assertEqual(proxy.ranges_dropped, 1)
        self.assertSamePack(Packs.path("stories"), out)

    def test_push_resumes_after_broken_chunk(self):
        pack = self.copy_pack("big")
        digest, size = Packs.shard("big")
        proxy = FaultProxy(self.daemon.port, cut_patch_after=(4 << 20) + (1 << 20))
        self.addCleanup(proxy.close)
        result = run_uc("push", pack, "--registry", "http://127.0.0.1:%d" % proxy.port,
                        "--slug", "big", "--version", "1", "--token-file", self.token_file,
                        "--chunked-above", "4M", "--chunk-size", "4M")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(proxy.cuts, 1)
        self.assertRegex(result.stderr, r"chunk at byte \d+ of shard %s failed" % digest)
        self.assertNotIn("resuming the upload", result.stderr)
        # One upload, continued after the cut, rather than a second one from byte 0.
        self.assertEqual(self.daemon.log().count("started for token"), 1)
        self.assertTrue(filecmp.cmp(self.daemon.blob_path(digest), os.path.join(pack, digest),
                                    shallow=False))

    def test_push_resumes_interrupted_upload(self):
        pack = self.copy_pack("big")
        digest, size = Packs.shard("big")
        chunked = ("--chunked-above", "4M", "--chunk-size", "4M")
        command = [UC, "push", pack, "--registry", self.registry, "--slug", "big", "--version",
                   "1", "--token-file", self.token_file, "--limit-rate", "8M", *chunked]
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.kill_when(proc, lambda: self.upload_received() >= 8 << 20, "two stored chunks")
        received = self.upload_received()
        self.assertTrue(os.path.exists(os.path.join(pack, ".uc-upload-" + digest)))

        result = self.push(pack, "big", "1", *chunked)
        self.assertEqual(result.returncode, 0, result.stderr)
        match = re.search(r"resuming the upload of shard %s at byte (\d+)" % digest, result.stderr)
        self.assertIsNotNone(match, result.stderr)
        self.assertGreaterEqual(int(match.group(1)), received)
        self.assertFalse(os.path.exists(os.path.join(pack, ".uc-upload-" + digest)))
        self.assertTrue(filecmp.cmp(self.daemon.blob_path(digest), os.path.join(pack, digest),
                                    shallow=False))

    def upload_received(self):
        db = self.daemon.catalog()
        try:
            row = db.execute("SELECT max(received) FROM uploads").fetchone()
            return row[0] or 0
        finally:
            db.close()


if __name__ == "__main__":
    if not os.path.exists(UC):
        print("uc is not built at " + UC)
        raise SystemExit(77)
    try:
        regtest.main()
    finally:
        Packs.remove()
