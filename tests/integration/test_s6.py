"""`vitals run` under real s6 supervision (Debian s6): the notification-fd protocol end to end.
s6-svwait -U must return only once the gating probes pass."""
import os
import shutil
import socket
import subprocess
import time
import unittest

from vitals_testlib import VITALS, VitalsTestCase, free_port, http_get, wait_for, wait_port


@unittest.skipUnless(shutil.which("s6-svscan"), "needs Debian's s6 (apt-get install s6)")
class AgentUnderS6(VitalsTestCase):
    def start_scan(self, services):
        """services: {name: run script text}. Starts s6-svscan on a fresh scan dir."""
        scan = os.path.join(self.tmp.path, "scan")
        os.makedirs(scan)
        for name, run in services.items():
            d = os.path.join(scan, name)
            os.makedirs(d)
            self.tmp.file(f"scan/{name}/run", run, mode=0o755)
            self.tmp.file(f"scan/{name}/notification-fd", "3\n")
        proc = self.spawn(["s6-svscan", scan], start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop():
            subprocess.run(["s6-svscanctl", "-t", scan], capture_output=True)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.addCleanup(stop)
        for name in services:
            wait_for(lambda: subprocess.run(["s6-svok", os.path.join(scan, name)]).returncode == 0,
                     what=f"s6-supervise for {name}")
        return scan

    def test_svwait_returns_only_once_probes_pass(self):
        dep_port, agent_port = free_port(), free_port()
        cfg = self.tmp.file("vitals.yaml", f"""
listen: 127.0.0.1:{agent_port}
probes:
  dep:
    plugin: tcp
    interval: 1s
    start_interval: 20ms
    timeout: 200ms
    options: {{port: {dep_port}}}
""")
        scan = self.start_scan({"vitals": f"#!/bin/sh\nexec 2>{self.tmp.path}/agent.log\nexec {VITALS} run -c {cfg}\n"})
        svc = os.path.join(scan, "vitals")
        wait_port(agent_port)  # the agent is up and serving...
        p = subprocess.run(["s6-svwait", "-U", "-t", "500", svc])
        self.assertEqual(p.returncode, 99)  # ...but not ready: s6-svwait times out
        out = subprocess.run(["s6-svstat", "-o", "up,ready", svc], capture_output=True, text=True).stdout
        self.assertEqual(out.split(), ["true", "false"])

        dep = socket.socket()
        self.addCleanup(dep.close)
        dep.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        dep.bind(("127.0.0.1", dep_port))
        dep.listen(8)
        p = subprocess.run(["s6-svwait", "-U", "-t", "10000", svc])
        self.assertEqual(p.returncode, 0)
        out = subprocess.run(["s6-svstat", "-o", "up,ready", svc], capture_output=True, text=True).stdout
        self.assertEqual(out.split(), ["true", "true"])
        self.assertEqual(http_get(f"http://127.0.0.1:{agent_port}/readyz")[0], 200)
        with open(os.path.join(self.tmp.path, "agent.log")) as f:
            self.assertIn("ready: notified s6", f.read())

        # s6-svc -d stops it cleanly (SIGTERM -> exit 0).
        subprocess.run(["s6-svc", "-wd", "-T", "5000", "-d", svc], check=True)
        out = subprocess.run(["s6-svstat", svc], capture_output=True, text=True).stdout
        self.assertIn("exitcode 0", out)

    def test_agent_reads_notification_fd_file_from_service_dir(self):
        agent_port = free_port()
        cfg = self.tmp.file("vitals.yaml", f"listen: 127.0.0.1:{agent_port}\nprobes: {{}}\n")
        # No --notify-fd: the agent finds ./notification-fd (run scripts start in the service dir).
        scan = self.start_scan({"v": f"#!/bin/sh\nexec {VITALS} run -c {cfg} 2>/dev/null\n"})
        p = subprocess.run(["s6-svwait", "-U", "-t", "10000", os.path.join(scan, "v")])
        self.assertEqual(p.returncode, 0)  # no gating probes: ready at once


if __name__ == "__main__":
    unittest.main()
