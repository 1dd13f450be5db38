"""An installed tree works with any prefix and still works when copied elsewhere as a whole."""
import os
import shutil
import subprocess
import unittest

from vitals_testlib import VITALS, VitalsTestCase

BUILD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(VITALS)))


class InstalledTree(VitalsTestCase):
    def test_install_then_copy(self):
        prefix = os.path.join(self.tmp.path, "prefix")
        subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], check=True,
                       capture_output=True)
        copied = os.path.join(self.tmp.path, "elsewhere")
        shutil.copytree(prefix, copied, symlinks=True)
        shutil.rmtree(prefix)
        exe = os.path.join(copied, "bin", "vitals")
        p = subprocess.run([exe, "plugins"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"plugin directory: {copied}/lib", p.stdout)
        for name in ("postgres", "ollama", "mcp-http", "http", "tcp", "exec"):
            self.assertIn(f"  {name} ", p.stdout)
        # The default config is the one installed beside it: <prefix>/etc/vitals/vitals.yaml.
        p = subprocess.run([exe, "validate"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(f"{copied}/etc/vitals/vitals.yaml: ok"), p.stdout)
        self.assertTrue(os.path.exists(os.path.join(copied, "include", "vitals", "probe.h")))


if __name__ == "__main__":
    unittest.main()
