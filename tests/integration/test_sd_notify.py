"""systemd's readiness protocol (sd_notify) on a NOTIFY_SOCKET the test binds, as systemd does: what
`vitals run` and `vitals notify` send, in which order, and from which process.

The socket is an AF_UNIX datagram socket at a path or at an abstract name ('@...') with SO_PASSCRED,
so every message comes with the pid of its sender, which is what systemd files it under. The same
under real systemd (Type=notify units, the watchdog, podman --sdnotify=container) is
tests/container/systemd.sh.
"""
import os
import signal
import socket
import subprocess
import threading
import time

from test_agent import Listener
from vitals_testlib import VITALS, VitalsTestCase, free_port, wait_for

IS_ROOT = os.geteuid() == 0

TCP_CONFIG = """
listen: 127.0.0.1:@PORT@
start_period: 30s
probes:
  dep:
    plugin: tcp
    interval: 200ms
    timeout: 100ms
    failure_threshold: 1
    options: {{port: {dep_port}}}
"""


class NotifySocket:
    """A datagram socket standing in for systemd's; a thread records (pid, message) pairs."""

    def __init__(self, test, abstract=False):
        name = f"vitals-sd-{os.getpid()}-{id(self)}"
        self.name = "@" + name if abstract else os.path.join(test.tmp.path, name + ".sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + name if abstract else self.name)
        self.messages = []  # (sender pid, [lines])
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        test.addCleanup(self.close)

    def _read(self):
        creds_size = socket.CMSG_SPACE(12)  # struct ucred
        while not self._closed:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, creds_size + socket.CMSG_SPACE(16))
            except OSError:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(payload[:4], "little")
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for i in range(0, len(payload) - len(payload) % 4, 4):
                        os.close(int.from_bytes(payload[i:i + 4], "little"))  # as systemd does
            with self._lock:
                self.messages.append((pid, data.decode().splitlines()))

    def lines(self):
        """Every line received, in order, as (index of its message, pid, line)."""
        with self._lock:
            return [(i, pid, line) for i, (pid, lines) in enumerate(self.messages) for line in lines]

    def wait_line(self, predicate, after=-1, timeout=10.0, what="a message"):
        """The first (index, pid, line) after message index `after` whose line satisfies
        predicate."""
        def find():
            return next((x for x in self.lines() if x[0] > after and predicate(x[2])), None)
        return wait_for(find, timeout, what=what)

    def close(self):
        self._closed = True
        self.sock.close()


class AgentUnderSystemd(VitalsTestCase):
    def start(self, config, sock, extra_env=None, **kw):
        env = dict(os.environ, NOTIFY_SOCKET=sock.name, **(extra_env or {}))
        return self.start_agent(config, env=env, **kw)

    def test_ready_status_watchdog_reload_stop_in_order(self):
        sock = NotifySocket(self)
        dep = Listener(free_port())
        self.addCleanup(dep.close)
        agent = self.start(TCP_CONFIG.format(dep_port=dep.port), sock,
                           {"WATCHDOG_USEC": "400000"})  # a ping every 200 ms
        pid = agent.proc.pid

        first = sock.wait_line(lambda l: l.startswith("STATUS=starting ready=false 0/1 dep:"),
                               what="STATUS=starting")
        self.assertEqual(first[1], pid)
        time.sleep(0.5)
        self.assertNotIn("READY=1", [line for _, _, line in sock.lines()])  # not ready yet

        dep.open()
        ready = sock.wait_line(lambda l: l == "READY=1", what="READY=1")
        self.assertEqual(ready[1], pid)
        sock.wait_line(lambda l: l == "STATUS=healthy ready=true 1/1", after=ready[0] - 1,
                       what="STATUS=healthy")
        self.assertIn("ready: notified systemd", agent.log())
        pings = sock.wait_line(lambda l: l == "WATCHDOG=1", after=ready[0], what="WATCHDOG=1")
        sock.wait_line(lambda l: l == "WATCHDOG=1", after=pings[0], what="a second WATCHDOG=1")

        dep.close()
        down = sock.wait_line(lambda l: l.startswith("STATUS=unhealthy ready=false 0/1 dep:"),
                              what="STATUS=unhealthy")

        agent.signal(signal.SIGHUP)
        reloading = sock.wait_line(lambda l: l == "RELOADING=1", after=down[0], what="RELOADING=1")
        same = [line for i, _, line in sock.lines() if i == reloading[0]]
        usec = [line for line in same if line.startswith("MONOTONIC_USEC=")]
        self.assertEqual(len(usec), 1, same)
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.assertTrue(0 < now_usec - int(usec[0].split("=")[1]) < 60_000_000, usec)
        sock.wait_line(lambda l: l == "READY=1", after=reloading[0], what="READY=1 after the reload")
        wait_for(lambda: "reloaded" in agent.log(), what="the reload's log line")

        agent.signal(signal.SIGTERM)
        self.assertEqual(agent.proc.wait(10), 0)
        stopping = sock.wait_line(lambda l: l == "STOPPING=1", what="STOPPING=1")
        time.sleep(0.3)
        self.assertEqual(sock.lines()[-1][0], stopping[0], "messages after STOPPING=1")
        self.assertEqual({p for _, p, _ in sock.lines()}, {pid})

    def test_abstract_socket_and_no_gating_probes(self):
        sock = NotifySocket(self, abstract=True)
        self.start("listen: 127.0.0.1:@PORT@\nprobes: {}\n", sock)
        got = sock.wait_line(lambda l: l == "READY=1", what="READY=1")
        self.assertIn("STATUS=healthy ready=true 0/0", [l for i, _, l in sock.lines() if i <= got[0]])

    def test_no_watchdog_pings_when_watchdog_pid_is_another_process(self):
        sock = NotifySocket(self)
        self.start("listen: 127.0.0.1:@PORT@\nprobes: {}\n", sock,
                   {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
        sock.wait_line(lambda l: l == "READY=1", what="READY=1")
        time.sleep(1.5)  # 15 ping intervals
        self.assertNotIn("WATCHDOG=1", [line for _, _, line in sock.lines()])

    def test_s6_fd_and_socket_are_both_notified(self):
        sock = NotifySocket(self)
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.start("listen: 127.0.0.1:@PORT@\nprobes: {}\n", sock,
                   extra_args=["--notify-fd", str(w)], pass_fds=[w])
        os.close(w)
        sock.wait_line(lambda l: l == "READY=1", what="READY=1")
        self.assertEqual(os.read(r, 10), b"\n")

    def test_exec_probe_commands_do_not_see_the_socket(self):
        sock = NotifySocket(self)
        agent = self.start("""
listen: 127.0.0.1:@PORT@
probes:
  env:
    plugin: exec
    options: {command: [/bin/sh, -c, 'echo "socket=${NOTIFY_SOCKET:-unset} usec=${WATCHDOG_USEC:-unset}"']}
""", sock, {"WATCHDOG_USEC": "30000000"})
        self.assertEqual(agent.wait_probe("env", "pass")["message"], "socket=unset usec=unset")

    def test_unusable_notify_socket_exits_100(self):
        cfg = self.tmp.file("v.yaml", "probes: {}\n")
        p = subprocess.run([VITALS, "run", "-c", cfg], capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, NOTIFY_SOCKET="run/notify"))
        self.assertEqual(p.returncode, 100)
        self.assertIn("NOTIFY_SOCKET must be an absolute path or an abstract socket name starting "
                      "with @, not 'run/notify'", p.stderr)


class NotifyUnderSystemd(VitalsTestCase):
    """`vitals notify` in a Type=notify unit: no s6 fd, so READY=1 goes on NOTIFY_SOCKET."""

    def notify(self, sock, config, extra_args=(), pass_fds=()):
        cfg = self.tmp.file("notify.yaml", config.replace("@PORT@", str(free_port())))
        out = os.path.join(self.tmp.path, "prog-env")
        # PROG records what it was given, then stays up like a server.
        prog = ["/bin/sh", "-c", 'echo "socket=${NOTIFY_SOCKET:-unset} usec=${WATCHDOG_USEC:-unset} '
                'pid=${WATCHDOG_PID:-unset}" > "$0"; exec sleep 60', out]
        env = dict(os.environ, NOTIFY_SOCKET=sock.name, WATCHDOG_USEC="30000000",
                   WATCHDOG_PID=str(os.getpid()))
        log = open(os.path.join(self.tmp.path, "notify.log"), "w")
        self.addCleanup(log.close)
        p = self.spawn([VITALS, "notify", "-c", cfg, "--probe", "dep", *extra_args, "--", *prog],
                       env=env, cwd=self.tmp.path, stdout=log, stderr=subprocess.STDOUT,
                       pass_fds=pass_fds)
        return p, out

    def test_ready_only_once_the_probe_passes_and_prog_has_no_socket(self):
        sock = NotifySocket(self)
        dep = Listener(free_port())
        self.addCleanup(dep.close)
        prog, out = self.notify(sock, TCP_CONFIG.format(dep_port=dep.port))
        wait_for(lambda: os.path.exists(out) and open(out).read().endswith("\n"), what="PROG to start")
        self.assertEqual(open(out).read(), "socket=unset usec=unset pid=unset\n")
        time.sleep(0.5)
        self.assertEqual(sock.lines(), [])  # the probe fails: not ready

        dep.open()
        ready = sock.wait_line(lambda l: l == "READY=1", what="READY=1")
        if IS_ROOT:  # the poller sends on behalf of PROG, the unit's main process
            self.assertEqual(ready[1], prog.pid)
        self.assertIsNone(prog.poll())
        time.sleep(0.3)
        self.assertEqual([line for _, _, line in sock.lines()], ["READY=1"])

    def test_s6_fd_wins_over_the_socket(self):
        sock = NotifySocket(self)
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        dep = Listener(free_port())
        self.addCleanup(dep.close)
        dep.open()
        self.notify(sock, TCP_CONFIG.format(dep_port=dep.port), ["--notify-fd", str(w)], [w])
        os.close(w)
        self.assertEqual(os.read(r, 10), b"\n")
        time.sleep(0.3)
        self.assertEqual(sock.lines(), [])

    def test_neither_fd_nor_socket_exits_100(self):
        cfg = self.tmp.file("v.yaml", TCP_CONFIG.format(dep_port=free_port()).replace("@PORT@", "9851"))
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        p = subprocess.run([VITALS, "notify", "-c", cfg, "--probe", "dep", "--", "true"],
                           capture_output=True, text=True, timeout=30, env=env, cwd=self.tmp.path)
        self.assertEqual(p.returncode, 100)
        self.assertIn("no notification fd: pass --notify-fd, run from a service directory with "
                      "notification-fd, or under systemd (NOTIFY_SOCKET)", p.stderr)
