"""vitals under real systemd, checked from outside as a user would (run by systemd.sh).

1. `podman run --systemd=always` of localhost/vitals-systemd:test (systemd 252 is PID 1 inside):
   - web.service, Type=notify + NotifyAccess=all, is `vitals notify` wrapping a server that starts
     listening 4 s after it starts: `systemctl start` returns only once the tcp probe passes (the
     port answers the moment it returns), the unit is `activating` until then, and the server's
     environment has no NOTIFY_SOCKET or WATCHDOG_USEC;
   - vitals.service as shipped (packaging/systemd/vitals.service, with a drop-in making the
     watchdog 3 s): ready at start, its STATUS= line in `systemctl status` following the probe,
     `systemctl reload` (SIGHUP, RELOADING=1 ... READY=1), watchdog pings keeping it running, and a
     SIGSTOPped agent killed by the watchdog and restarted (a new MainPID).
2. `podman run --sdnotify=container` with a NOTIFY_SOCKET the test binds on the host: READY=1
   reaches it only once the agent in the container is ready; what else podman forwards is printed.
"""
import os
import socket
import subprocess
import sys
import threading
import time

from ctlib import Checks, free_port, http_get, podman, wait_for

IMAGE = os.environ.get("IMAGE", "localhost/vitals-systemd:test")
WORK = os.environ.get("WORK", "/var/tmp/vitals-container")
NAME = "vitals-systemd-test"
WATCHDOG_SEC = 3
ck = Checks()


def sh(*cmd, check=False, timeout=60):
    """A command inside the systemd container."""
    return podman("exec", NAME, *cmd, check=check, timeout=timeout)


def show(unit, prop):
    return sh("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()


def journal(unit):
    return sh("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def write_files(etc, web_port, agent_port, dep_port, sdnotify_port):
    """The test's /etc/vitals (mounted read-only) and the units it adds (copied in)."""
    files = {
        # The agent: one critical probe, the web service's port.
        "vitals.yaml": f"listen: 127.0.0.1:{agent_port}\nstart_period: 0s\nprobes:\n"
                       f"  web: {{plugin: tcp, interval: 500ms, timeout: 250ms, failure_threshold: 1, "
                       f"options: {{port: {web_port}}}}}\n",
        # web.service's probe, and the server it wraps (a vitals agent with no probes: it listens).
        "web-probe.yaml": f"listen: 127.0.0.1:{free_port()}\nprobes:\n"
                          f"  web: {{plugin: tcp, options: {{port: {web_port}}}}}\n",
        "web-server.yaml": f"listen: 127.0.0.1:{web_port}\nprobes: {{}}\n",
        "web-server.sh": "#!/bin/sh\n"
                         'echo "server environment: NOTIFY_SOCKET=${NOTIFY_SOCKET:-unset} '
                         'WATCHDOG_USEC=${WATCHDOG_USEC:-unset}"\n'
                         "sleep 4\nexec /usr/bin/vitals run -c /etc/vitals/web-server.yaml\n",
        "web.service": "[Unit]\nDescription=a server that listens 4 s after it starts\n"
                       "[Service]\nType=notify\nNotifyAccess=all\n"
                       "ExecStart=/usr/bin/vitals notify -c /etc/vitals/web-probe.yaml --probe web "
                       "-- /etc/vitals/web-server.sh\n",
        "vitals-watchdog.conf": f"[Service]\nWatchdogSec={WATCHDOG_SEC}s\nRestartSec=1s\n",
        # For podman run --sdnotify=container: ready once the host's port dep_port listens.
        "sdnotify.yaml": f"listen: 127.0.0.1:{sdnotify_port}\nprobes:\n"
                         f"  dep: {{plugin: tcp, interval: 200ms, timeout: 100ms, "
                         f"options: {{port: {dep_port}}}}}\n",
    }
    os.makedirs(etc, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(etc, name), "w") as f:
            f.write(text)
    os.chmod(etc, 0o755)
    os.chmod(os.path.join(etc, "web-server.sh"), 0o755)


def boot(etc):
    podman("rm", "-f", "-t", "0", NAME, check=False)
    podman("run", "-d", "--name", NAME, "--systemd=always", "--network", "host",
           "-v", f"{etc}:/etc/vitals:ro", IMAGE)
    state = wait_for(lambda: sh("systemctl", "is-system-running").stdout.strip()
                     in ("running", "degraded") and sh("systemctl", "is-system-running").stdout.strip(),
                     60, interval=0.5, what="systemd to finish booting")
    ck.check(True, "systemd boots as PID 1 in the container", state)
    for unit in ("vitals.service", "vitals-postgresql.service"):
        p = sh("systemd-analyze", "verify", f"/usr/lib/systemd/system/{unit}")
        ck.check(p.returncode == 0 and not (p.stdout + p.stderr).strip(),
                 f"`systemd-analyze verify` finds nothing to say about packaging/systemd/{unit}",
                 (p.stdout + p.stderr).strip())
    sh("sh", "-c", "cp /etc/vitals/web.service /etc/systemd/system/ && "
       "mkdir -p /etc/systemd/system/vitals.service.d && "
       "cp /etc/vitals/vitals-watchdog.conf /etc/systemd/system/vitals.service.d/ && "
       "systemctl daemon-reload", check=True)


def check_wrapped_service(web_port):
    print("web.service: Type=notify, vitals notify wrapping a server that listens after 4 s")
    t0 = time.monotonic()
    sh("systemctl", "start", "--no-block", "web.service", check=True)
    states = set()
    while time.monotonic() - t0 < 2.5:
        states.add((show("web.service", "ActiveState"), port_open(web_port)))
        time.sleep(0.2)
    ck.check(("activating", False) in states and ("active", False) not in states,
             "activating while the port is closed, never active before it opens", str(sorted(states)))
    p = sh("systemctl", "start", "web.service", timeout=60)  # joins the start job under way
    took = time.monotonic() - t0
    answers = port_open(web_port)
    ck.check(p.returncode == 0 and answers,
             "`systemctl start` returns once the probe passes: the port answers at once",
             f"exit {p.returncode} after {took:.1f}s, port open: {answers}")
    ck.check(took >= 4, "the start lasted the server's 4 s delay", f"{took:.1f}s")
    ck.check(show("web.service", "ActiveState") == "active", "web.service is active")
    log = journal("web.service")
    ck.check("server environment: NOTIFY_SOCKET=unset WATCHDOG_USEC=unset" in log,
             "the wrapped server's environment has no NOTIFY_SOCKET or WATCHDOG_USEC")
    ck.check("probe web passed after" in log, "vitals notify logged the pass",
             next((line for line in log.splitlines() if "passed after" in line), ""))


def check_agent(web_port):
    print(f"vitals.service as shipped, WatchdogSec={WATCHDOG_SEC}s by a drop-in")
    p = sh("systemctl", "start", "vitals.service", timeout=60)
    started = time.monotonic()
    ck.check(p.returncode == 0 and show("vitals.service", "ActiveState") == "active",
             "`systemctl start vitals` returns with the agent active", p.stderr.strip())
    status = sh("systemctl", "status", "--no-pager", "vitals.service").stdout
    ck.check('Status: "healthy ready=true 1/1"' in status, "`systemctl status` shows the STATUS line",
             next((line.strip() for line in status.splitlines() if "Status:" in line), "none"))
    pid = show("vitals.service", "MainPID")

    sh("systemctl", "stop", "web.service", check=True)
    text = wait_for(lambda: (t := show("vitals.service", "StatusText")).startswith("unhealthy") and t,
                    15, interval=0.2, what="the STATUS line to follow the probe")
    ck.check(text.startswith("unhealthy ready=false 0/1 web:"), "STATUS follows a failing probe", text)
    sh("systemctl", "start", "web.service", check=True, timeout=60)
    text = wait_for(lambda: (t := show("vitals.service", "StatusText")).startswith("healthy") and t,
                    15, interval=0.2, what="the STATUS line to recover")
    ck.check(text == "healthy ready=true 1/1", "and its recovery", text)

    p = sh("systemctl", "reload", "vitals.service", timeout=60)
    wait_for(lambda: "reloaded /etc/vitals/vitals.yaml" in journal("vitals.service"), 15,
             interval=0.2, what="the reload's log line")
    ck.check(p.returncode == 0 and show("vitals.service", "MainPID") == pid
             and show("vitals.service", "ActiveState") == "active",
             "`systemctl reload` reloads in place (SIGHUP, RELOADING=1 ... READY=1)")

    # Without pings systemd would have killed it after WATCHDOG_SEC: up for 3 of them is proof.
    time.sleep(max(0.0, 3 * WATCHDOG_SEC - (time.monotonic() - started)))
    ck.check(show("vitals.service", "MainPID") == pid and show("vitals.service", "NRestarts") == "0",
             f"watchdog pings keep it running past {3 * WATCHDOG_SEC}s (WatchdogSec={WATCHDOG_SEC}s)",
             f"MainPID {pid}, up {time.monotonic() - started:.1f}s")

    sh("sh", "-c", f"kill -STOP {pid}", check=True)
    stopped = time.monotonic()
    new = wait_for(lambda: (n := show("vitals.service", "MainPID")) not in (pid, "0")
                   and show("vitals.service", "ActiveState") == "active" and n,
                   60, interval=0.2, what="systemd to restart the stopped agent")
    log = journal("vitals.service")
    ck.check("Watchdog timeout" in log and show("vitals.service", "NRestarts") == "1",
             "a SIGSTOPped agent stops pinging: the watchdog kills it and systemd restarts it",
             f"MainPID {pid} -> {new} after {time.monotonic() - stopped:.1f}s")
    text = wait_for(lambda: (t := show("vitals.service", "StatusText")).startswith("healthy") and t,
                    15, interval=0.2, what="the restarted agent to be healthy")
    ck.check(True, "the restarted agent reports again", text)

    p = sh("systemctl", "stop", "vitals.service", timeout=60)
    ck.check(p.returncode == 0 and show("vitals.service", "Result") == "success",
             "`systemctl stop` (STOPPING=1, exit 0): result success", show("vitals.service", "Result"))


class HostNotifySocket:
    """A datagram socket on the host, standing in for systemd's; records (pid, lines, time)."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.messages = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data, _, _, _ = self.sock.recvmsg(65536, 64)
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace").splitlines()))

    def lines(self):
        return [line for _, lines in list(self.messages) for line in lines]

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def check_sdnotify_container(etc, dep_port, agent_port):
    print("podman run --sdnotify=container, NOTIFY_SOCKET bound on the host by the test")
    name = "vitals-sdnotify-test"
    sock = HostNotifySocket(os.path.join(WORK, f"notify-{os.getpid()}.sock"))
    dep = socket.socket()
    try:
        podman("rm", "-f", "-t", "0", name, check=False)
        env = dict(os.environ, NOTIFY_SOCKET=sock.path)
        subprocess.run(["podman", "run", "-d", "--name", name, "--sdnotify=container", "--network", "host",
                        "-e", "WATCHDOG_USEC=1000000", "-v", f"{etc}:/etc/vitals:ro", IMAGE,
                        "/usr/bin/vitals", "run", "-c", "/etc/vitals/sdnotify.yaml"],
                       env=env, check=True, capture_output=True, text=True, timeout=120)
        wait_for(lambda: http_get(f"http://127.0.0.1:{agent_port}/health")[0] == 503, 30,
                 what="the agent in the container to answer, starting")
        time.sleep(1)
        ck.check("READY=1" not in sock.lines(), "no READY=1 while the agent's probe fails",
                 str(sock.lines()))
        dep.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        dep.bind(("127.0.0.1", dep_port))
        dep.listen(16)
        opened = time.monotonic()
        wait_for(lambda: "READY=1" in sock.lines(), 20, what="READY=1 on the host's socket")
        at = next(t for t, lines in sock.messages if "READY=1" in lines)
        ck.check(True, "READY=1 reaches the host's NOTIFY_SOCKET once the probe passes",
                 f"{(at - opened) * 1000:.0f} ms after the port opened")
        wait_for(lambda: "WATCHDOG=1" in sock.lines(), 10, what="WATCHDOG=1 on the host's socket")
        ck.check(True, "WATCHDOG=1 pings (WATCHDOG_USEC given to the container) reach it too")
        seen = sorted({line.split("=")[0] for line in sock.lines()})
        print(f"  (podman forwarded: {', '.join(seen)}; STATUS= is not among them)"
              if "STATUS" not in seen else f"  (podman forwarded: {', '.join(seen)})")
    finally:
        dep.close()
        podman("rm", "-f", "-t", "0", name, check=False)
        sock.close()


def main():
    etc = os.path.join(WORK, "systemd-etc")
    web_port, agent_port, dep_port, sdnotify_port = (free_port() for _ in range(4))
    write_files(etc, web_port, agent_port, dep_port, sdnotify_port)
    try:
        boot(etc)
        check_wrapped_service(web_port)
        check_agent(web_port)
    except Exception as e:  # noqa: BLE001 - report, clean up, fail
        ck.check(False, "unexpected error", repr(e))
        print(podman("logs", NAME, check=False).stdout[-3000:])
        print(sh("journalctl", "--no-pager", "-n", "60").stdout)
    finally:
        podman("rm", "-f", "-t", "0", NAME, check=False)
    try:
        check_sdnotify_container(etc, dep_port, sdnotify_port)
    except Exception as e:  # noqa: BLE001
        ck.check(False, "unexpected error", repr(e))
    return ck.summary()


if __name__ == "__main__":
    sys.exit(main())
