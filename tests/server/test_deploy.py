#!/usr/bin/env python3
"""The deploy/ examples pass their own tools' checks: systemd-analyze verify for the unit
and nginx -t for the reverse-proxy configuration. Each check is skipped where its tool is
not installed."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regtest  # noqa: E402

DEPLOY = os.path.join(regtest.SOURCE_DIR, "deploy")


class DeployTest(unittest.TestCase):
    def setUp(self):
        self.scratch = tempfile.mkdtemp(prefix="ucregd-deploy-")
        self.addCleanup(shutil.rmtree, self.scratch, True)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_systemd_unit_verifies(self):
        with open(os.path.join(DEPLOY, "systemd", "ucregd.service")) as f:
            unit = f.read()
        self.assertIn("ProtectSystem=strict", unit)
        self.assertIn("ReadWritePaths=/var/lib/ucregd", unit)
        self.assertIn("User=ucregd", unit)
        # Point ExecStart at the binary of this build, which verify requires to exist.
        unit = unit.replace("/usr/local/sbin/ucregd", os.path.abspath(regtest.UCREGD))
        path = os.path.join(self.scratch, "ucregd.service")
        with open(path, "w") as f:
            f.write(unit)
        # Documentation=man:ucregd(8) is checked with man(1): let it find docs/ucregd.8.
        man_dir = os.path.join(self.scratch, "man", "man8")
        os.makedirs(man_dir)
        shutil.copy(os.path.join(regtest.SOURCE_DIR, "docs", "ucregd.8"), man_dir)
        env = dict(os.environ, MANPATH=os.path.join(self.scratch, "man"))
        result = subprocess.run(["systemd-analyze", "verify", path], capture_output=True,
                                text=True, timeout=60, env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("ucregd.service:", result.stderr)

    @unittest.skipUnless(shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"),
                         "nginx is not installed")
    def test_nginx_config_parses(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        with open(os.path.join(DEPLOY, "nginx", "ucregd.conf")) as f:
            site = f.read()
        # Keep every path inside the scratch directory; nginx -t opens them.
        site = site.replace("/var/cache/nginx/ucregd", os.path.join(self.scratch, "cache"))
        site = site.replace("listen 80;", "listen 127.0.0.1:8080;")
        with open(os.path.join(self.scratch, "site.conf"), "w") as f:
            f.write(site)
        main = ("pid %(d)s/nginx.pid;\nerror_log %(d)s/error.log;\nevents {}\nhttp {\n"
                "access_log off;\nclient_body_temp_path %(d)s/body;\nproxy_temp_path %(d)s/proxy;\n"
                "fastcgi_temp_path %(d)s/fcgi;\nuwsgi_temp_path %(d)s/uwsgi;\n"
                "scgi_temp_path %(d)s/scgi;\ninclude %(d)s/site.conf;\n}\n" % {"d": self.scratch})
        conf = os.path.join(self.scratch, "nginx.conf")
        with open(conf, "w") as f:
            f.write(main)
        result = subprocess.run([nginx, "-t", "-q", "-p", self.scratch, "-e",
                                 os.path.join(self.scratch, "error.log"), "-c", conf],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
