"""The plugin SDK: installed with `cmake --install`, an example plugin built out of tree against it
(find_package and pkg-config), then loaded by the agent from that prefix through a plugin_dir list."""
import glob
import os
import re
import subprocess
import unittest

from vitals_testlib import SOURCE_DIR, VITALS, VitalsTestCase

BUILD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(VITALS)))
EXAMPLE = os.path.join(SOURCE_DIR, "examples", "loadavg")


def only(root, pattern):
    """The one file under root matching the glob pattern."""
    found = glob.glob(os.path.join(root, pattern), recursive=True)
    if len(found) != 1:
        raise AssertionError(f"expected one {pattern} under {root}, found {found}")
    return found[0]


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


class Sdk(VitalsTestCase):
    def setUp(self):
        super().setUp()
        self.prefix = os.path.join(self.tmp.path, "prefix")
        run(["cmake", "--install", BUILD_DIR, "--prefix", self.prefix])
        self.vitals = os.path.join(self.prefix, "bin", "vitals")
        self.shipped = os.path.dirname(only(self.prefix, "lib/**/vitals/plugins/tcp.so"))
        self.libdir = os.path.dirname(os.path.dirname(self.shipped))  # <prefix>/<libdir>

    def build_with_cmake(self):
        build = os.path.join(self.tmp.path, "build-cmake")
        run(["cmake", "-S", EXAMPLE, "-B", build, f"-DCMAKE_PREFIX_PATH={self.prefix}",
             "-DCMAKE_BUILD_TYPE=Release"])
        run(["cmake", "--build", build])
        dest = os.path.join(self.tmp.path, "plugins-cmake")
        run(["cmake", "--install", build, "--prefix", dest])
        return os.path.dirname(only(dest, "lib/**/vitals/plugins/loadavg.so"))

    def build_with_pkg_config(self):
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.libdir, "pkgconfig"))
        version = run(["pkg-config", "--modversion", "vitals-probe"], env=env).stdout.strip()
        self.assertEqual(version, run([VITALS, "version"]).stdout.split()[1])
        cflags = run(["pkg-config", "--cflags", "vitals-probe"], env=env).stdout.split()
        libs = run(["pkg-config", "--libs", "vitals-probe"], env=env).stdout.split()
        plugindir = run(["pkg-config", "--variable=plugindir", "vitals-probe"], env=env).stdout.strip()
        self.assertEqual(os.path.realpath(plugindir), os.path.realpath(self.shipped))
        out = os.path.join(self.tmp.path, "plugins-pc")
        os.mkdir(out)
        run(["c++", "-std=c++17", "-O2", *cflags, "-o", os.path.join(out, "loadavg.so"),
             os.path.join(EXAMPLE, "loadavg.cpp"), *libs])
        return out

    def config(self, name, dirs):
        listed = "".join(f"  - {d}\n" for d in dirs)
        return self.tmp.file(name, f"plugin_dir:\n{listed}probes:\n"
                                   "  load: {plugin: loadavg, tier: optional}\n"
                                   "  port: {plugin: tcp, options: {port: 1}}\n")

    def check_loads(self, plugin_folder, name):
        cfg = self.config(name, [self.shipped, plugin_folder])
        p = subprocess.run([self.vitals, "once", "-c", cfg, "--probe", "load"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"^load (pass|warn) load \d+ms: load [0-9.]+ [0-9.]+ [0-9.]+ on \d+ CPUs")
        # The shipped plugins still come from the first folder.
        p = subprocess.run([self.vitals, "once", "-c", cfg, "--probe", "port"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertTrue(p.stdout.startswith("port fail connect"), p.stdout)
        p = run([self.vitals, "plugins", "-c", cfg])
        sections = re.split(r"^plugin directory: ", p.stdout, flags=re.M)[1:]
        self.assertEqual([s.splitlines()[0] for s in sections], [self.shipped, plugin_folder])
        self.assertIn("  tcp ", sections[0])
        self.assertNotIn("loadavg", sections[0])
        self.assertRegex(sections[1], r"\n  loadavg +1\.0\.0 +ABI 1\.0  Load average per CPU")
        p = run([self.vitals, "describe", "loadavg", "-c", cfg])
        self.assertIn("options:\n  (none)", p.stdout)

    def test_example_built_with_find_package(self):
        self.check_loads(self.build_with_cmake(), "cmake.yaml")

    def test_example_built_with_pkg_config(self):
        self.check_loads(self.build_with_pkg_config(), "pc.yaml")

    def test_a_name_found_again_in_a_later_folder_is_refused(self):
        first, second = self.build_with_cmake(), self.build_with_pkg_config()
        cfg = self.config("dup.yaml", [self.shipped, first, second])
        p = run([self.vitals, "plugins", "-c", cfg])
        self.assertIn(f"  refused {second}/loadavg.so (duplicate_name): duplicate plugin name "
                      f"'loadavg', already loaded from {first}/loadavg.so", p.stdout)
        p = subprocess.run([self.vitals, "once", "-c", cfg, "--probe", "load"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # Without the shipped folder in the list, the shipped plugins are not there.
        cfg = self.config("mine.yaml", [first])
        p = subprocess.run([self.vitals, "validate", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 100)
        self.assertIn(f"probes.port.plugin: no plugin 'tcp' in {first}; available: loadavg", p.stderr)

    def test_cmake_package_version_is_the_projects(self):
        build = os.path.join(self.tmp.path, "too-new")
        src = self.tmp.file("CMakeLists.txt", "cmake_minimum_required(VERSION 3.16)\nproject(x CXX)\n"
                                              "find_package(vitals 99 REQUIRED)\n")
        p = subprocess.run(["cmake", "-S", os.path.dirname(src), "-B", build,
                            f"-DCMAKE_PREFIX_PATH={self.prefix}"], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        version = run([VITALS, "version"]).stdout.split()[1]
        self.assertIn(f"version: {version}", p.stderr)


if __name__ == "__main__":
    unittest.main()
