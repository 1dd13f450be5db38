"""A real PostgreSQL 15 (Debian's binaries) for tests: throwaway clusters on ephemeral ports.

    pg = PgCluster(os.path.join(tmp, "pg"), free_port(), password="s3cret")
    pg.initdb()                 # superuser "postgres" with that password; scram over TCP
    pg.start(); pg.wait_ready()
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'x'")
    pg.kill9()                  # SIGKILL the postmaster (children die with it)
    pg.start(); pg.wait_ready() # crash recovery, same data
    pg.stop()                   # fast shutdown; always safe to call (use it in addCleanup)

    standby = PgCluster(os.path.join(tmp, "standby"), free_port())
    standby.basebackup_from(pg) # pg_basebackup -R: a real streaming hot standby
    standby.start(); standby.wait_ready()

    pg.dsn(user="app", password="x", dbname="db")  # libpq key=value string for TCP
    pg.pid / pg.postmaster_pid()                   # our child's pid / the one in postmaster.pid
    pg.command()                # the postmaster's argv, to run it under a supervisor (s6) instead
    FakePostgres("starting")    # a listener that answers 57P03 "starting up"; or "blackhole"

The server listens on 127.0.0.1 only and puts its Unix socket into base_dir. TCP logins use
scram-sha-256 (so a wrong password really fails); the Unix socket trusts everyone, which is how
psql() gets in. When the tests run as root (CI), initdb and postgres run as the `postgres` system
user the postgresql package creates (via setpriv, so the postmaster is our direct child): base_dir
is chowned to it and its ancestors get o+x so it can reach it.
"""
import os
import pwd
import shutil
import signal
import stat
import subprocess

from vitals_testlib import wait_for

PG_BIN = os.environ.get("VITALS_PG_BIN", "/usr/lib/postgresql/15/bin")


def pg_available():
    return os.path.exists(os.path.join(PG_BIN, "postgres"))


def _wait(predicate, timeout, what):
    return wait_for(predicate, timeout, interval=0.05, what=what)


class PgCluster:
    """One PostgreSQL data directory plus the postmaster running on it."""

    def __init__(self, base_dir, port, password="postgres", superuser="postgres", settings=None):
        self.base_dir = os.path.abspath(base_dir)
        self.data_dir = os.path.join(self.base_dir, "data")
        self.log_path = os.path.join(self.base_dir, "postgres.log")
        self.port = port
        self.password = password
        self.superuser = superuser
        self.settings = dict(settings or {})
        self.proc = None
        self._log = None
        self._as_postgres = os.geteuid() == 0
        os.makedirs(self.base_dir, exist_ok=True)
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
            os.chown(self.base_dir, self._uid, self._gid)
            os.chmod(self.base_dir, 0o700)
            self._make_reachable(os.path.dirname(self.base_dir))

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _make_reachable(path):
        """Lets other users traverse (not list) every ancestor of path (e.g. a 0700 mkdtemp)."""
        while path and path != "/":
            st = os.stat(path)
            if not st.st_mode & stat.S_IXOTH:
                os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            path = os.path.dirname(path)

    def _cmd(self, args, env=None):
        """argv running PG_BIN/args[0] as the postgres user (when root) with exactly env added."""
        args = [os.path.join(PG_BIN, args[0]), *args[1:]]
        if env:
            args = ["/usr/bin/env", *[f"{k}={v}" for k, v in env.items()], *args]
        if self._as_postgres:
            return ["setpriv", f"--reuid={self._uid}", f"--regid={self._gid}", "--init-groups",
                    "--reset-env", *args]
        return args

    def _run(self, args, timeout=120, env=None):
        p = subprocess.run(self._cmd(args, env), capture_output=True, text=True, timeout=timeout,
                           cwd=self.base_dir)
        if p.returncode != 0:
            raise AssertionError(f"{' '.join(args[:2])} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def dsn(self, user=None, password=None, dbname="postgres", host="127.0.0.1", **extra):
        """A libpq key=value connection string for TCP (password defaults to the superuser's)."""
        parts = {"host": host, "port": str(self.port), "user": user or self.superuser,
                 "dbname": dbname}
        pw = self.password if password is None and user is None else password
        if pw is not None:
            parts["password"] = pw
        parts.update({k: str(v) for k, v in extra.items()})

        def quote(v):
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return " ".join(f"{k}={quote(v)}" for k, v in parts.items())

    # -- lifecycle ---------------------------------------------------------------------------

    def initdb(self):
        pwfile = os.path.join(self.base_dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._as_postgres:
            os.chown(pwfile, self._uid, self._gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run(["initdb", "-D", self.data_dir, "-U", self.superuser, f"--pwfile={pwfile}",
                       "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                       "--locale=C", "--no-sync"])
        finally:
            os.unlink(pwfile)
        return self

    def basebackup_from(self, primary, hot_standby=True):
        """Makes this cluster a streaming standby of `primary` (pg_basebackup -R)."""
        self._run(["pg_basebackup", "-D", self.data_dir, "-R", "-X", "stream", "-c", "fast",
                   "-h", "127.0.0.1", "-p", str(primary.port), "-U", primary.superuser,
                   "--no-sync"], env={"PGPASSWORD": primary.password})
        self.settings.setdefault("hot_standby", "on" if hot_standby else "off")
        self.password = primary.password
        self.superuser = primary.superuser
        return self

    def command(self, **settings):
        """The argv that runs this cluster's postmaster in the foreground (as the postgres user
        when we are root), e.g. for an s6 run script; settings become -c name=value."""
        conf = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                "unix_socket_directories": self.base_dir, "fsync": "off",
                "synchronous_commit": "off", "full_page_writes": "off",
                "shared_buffers": "16MB", "logging_collector": "off", "log_min_messages": "info",
                "log_connections": "on", "log_disconnections": "on"}
        conf.update(self.settings)
        conf.update({k: str(v) for k, v in settings.items()})
        args = ["postgres", "-D", self.data_dir]
        for k, v in conf.items():
            args += ["-c", f"{k}={v}"]
        return self._cmd(args)

    def start(self, **settings):
        """Starts the postmaster as our child (settings become -c name=value, on top of
        self.settings); output goes to log_path. Returns self; follow with wait_ready()."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.command(**settings), stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.base_dir,
                                     start_new_session=True)
        return self

    def postmaster_pid(self):
        """The pid recorded in postmaster.pid (also for a postmaster someone else started)."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                return int(f.readline())
        except (FileNotFoundError, ValueError):
            return None

    def pm_status(self):
        """The postmaster's own state from postmaster.pid: starting, ready, standby, stopping."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                lines = f.read().split("\n")
            return lines[7].strip() if len(lines) > 7 else None
        except FileNotFoundError:
            return None

    def wait_status(self, *statuses, timeout=60):
        def check():
            self._assert_alive()
            return self.pm_status() in statuses
        _wait(check, timeout, f"postmaster status {statuses} (log: {self.log_path})")

    def wait_ready(self, timeout=60):
        """Waits until a query works over the Unix socket."""
        def check():
            self._assert_alive()
            return self._psql("SELECT 1", check=False).returncode == 0
        _wait(check, timeout, f"PostgreSQL on port {self.port} to accept queries")
        return self

    def _assert_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"postgres exited with {self.proc.returncode}: {self.log()}")

    @property
    def pid(self):
        """The postmaster's pid (our direct child), or None when it is not running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def children(self):
        """Pids of the postmaster's child processes (backends, checkpointer, ...)."""
        pid = self.pid
        if pid is None:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
        return out

    def kill9(self, timeout=30):
        """SIGKILLs the postmaster and waits for its orphaned children to exit by themselves."""
        if self.pid is None:
            return
        kids = self.children()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_log()

        def gone():
            return not [k for k in kids if os.path.exists(f"/proc/{k}")
                        and not _is_zombie(k)]
        try:
            _wait(gone, timeout, "orphaned backends to exit")
        except AssertionError:
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop(self, fast=True, timeout=60):
        """Stops the postmaster: fast (SIGINT) or smart (SIGTERM); SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if fast else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._close_log()

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def destroy(self):
        """Stops the server and removes base_dir."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- SQL -----------------------------------------------------------------------------------

    def _psql(self, sql, dbname="postgres", check=True):
        p = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-h", self.base_dir, "-p", str(self.port),
                            "-U", self.superuser, "-d", dbname, "-c", sql],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "5"})
        if check and p.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed: {p.stderr}")
        return p

    def psql(self, sql, dbname="postgres"):
        """Runs SQL as the superuser over the Unix socket; returns stdout (unaligned, no header)."""
        return self._psql(sql, dbname).stdout.strip()


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class FakePostgres:
    """A TCP listener on 127.0.0.1 that plays one broken PostgreSQL, for states a real server
    passes through too quickly to catch.

    mode "starting": refuses SSL/GSS encryption ('N'), reads the StartupMessage and answers an
      ErrorResponse with SQLSTATE 57P03 "the database system is starting up", as a postmaster in
      PM_STARTUP does (the message text is the server's own, see backend_startup.c/postmaster.c).
    mode "blackhole": accepts connections and never sends a byte.
    """

    SSL_REQUEST = 80877103
    GSSENC_REQUEST = 80877104

    def __init__(self, mode, message="the database system is starting up", sqlstate="57P03"):
        import socket
        import threading
        self.mode = mode
        self.message = message
        self.sqlstate = sqlstate
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        import socket
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.mode == "blackhole":
                self._held.append(conn)
                continue
            try:
                conn.settimeout(5)
                self._answer(conn)
            except OSError:
                pass
            finally:
                conn.close()

    @staticmethod
    def _recv_exact(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise OSError("peer closed")
            buf += chunk
        return buf

    def _answer(self, conn):
        import struct
        while True:
            length, code = struct.unpack("!ii", self._recv_exact(conn, 8))
            if code in (self.SSL_REQUEST, self.GSSENC_REQUEST):
                conn.sendall(b"N")
                continue
            self._recv_exact(conn, length - 8)  # rest of the StartupMessage
            break
        fields = b"".join(t + v.encode() + b"\0" for t, v in (
            (b"S", "FATAL"), (b"V", "FATAL"), (b"C", self.sqlstate), (b"M", self.message))) + b"\0"
        conn.sendall(b"E" + struct.pack("!i", 4 + len(fields)) + fields)

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(5)
        for c in self._held:
            c.close()
