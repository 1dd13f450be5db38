// exec: runs a command (no shell) under the Nagios plugin contract: exit 0 pass, 1 warn, 2 fail,
// 3 or anything else fail ("unknown"). The first line of output is the message. The command gets a
// clean environment (PATH, LANG and the `env` option), never the agent's. On the deadline the whole
// process group is killed and reaped.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vitals/probe.hpp>

#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>

namespace {

const vitals_option kOptions[] = {
    {"command", VITALS_OPT_LIST, nullptr,
     "Program and arguments, run without a shell, e.g. [/usr/lib/nagios/plugins/check_disk, -w, "
     "10%]",
     1, 0},
    {"env", VITALS_OPT_MAP, nullptr,
     "Variables added to the command's clean environment (PATH and LANG by default; the agent's "
     "own are not passed), e.g. {PGPASSFILE: /etc/vitals/pgpass, TOKEN: \"${TOKEN}\"}",
     0, 0},
};

// The environment every command starts from, as NRPE users know it: a system PATH and a plain
// locale. `env` adds to it or overrides it.
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr const char* kDefaultLang = "C.UTF-8";

constexpr size_t kMaxOutput = 4096;

std::string first_line(const std::string& out) {
  std::string line = out.substr(0, out.find('\n'));
  if (auto bar = line.find('|'); bar != std::string::npos) line = line.substr(0, bar);  // perfdata
  line.erase(line.find_last_not_of(" \t\r") + 1);
  return line;
}

bool runnable(const std::string& file) {
  struct stat st {};
  return stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(file.c_str(), X_OK) == 0;
}

// The file a command runs, checked at load (validate, start, reload) like `nginx -t` checks its
// files: the program itself when it contains a '/', else the first match in the command's PATH
// (the one it runs with, as execvp would search it).
std::string find_program(const std::vector<std::string>& argv, const std::string& path) {
  const std::string& name = argv[0];
  // A scalar `command: check_disk -w 10%` arrives as one program name with spaces.
  const std::string hint = argv.size() == 1 && name.find_first_of(" \t") != std::string::npos
                               ? "; command is a list: [program, arg, ...]"
                               : "";
  if (name.find('/') != std::string::npos) {
    if (runnable(name)) return name;
    struct stat st {};
    const std::string why = stat(name.c_str(), &st) != 0 ? std::strerror(errno)
                            : !S_ISREG(st.st_mode)       ? "not a regular file"
                                                         : "not executable";
    throw std::runtime_error("command: unable to run " + name + ": " + why + hint);
  }
  std::stringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string file = (dir.empty() ? "." : dir) + "/" + name;
    if (runnable(file)) return file;
  }
  throw std::runtime_error("command: unable to run " + name + ": no executable " + name +
                           " in PATH " + path + hint);
}

class ExecProbe {
 public:
  ExecProbe(const vitals::Options& o, const vitals::Host&) : argv_(o.list("command")) {
    if (argv_.empty() || argv_[0].empty()) throw std::runtime_error("command must name a program");
    std::map<std::string, std::string> env = {{"PATH", kDefaultPath}, {"LANG", kDefaultLang}};
    for (const auto& [name, value] : o.map("env")) {
      if (name.empty() || name.find_first_of("=") != std::string::npos)
        throw std::runtime_error("env: invalid variable name '" + name + "'");
      env[name] = value;
    }
    for (const auto& [name, value] : env) env_.push_back(name + "=" + value);
    program_ = find_program(argv_, env["PATH"]);
  }

  void run(const vitals::Deadline& d, vitals::Result& r) {
    r.stage("exec");
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0)
      return void(r.fail(std::string("unable to create a pipe: ") + std::strerror(errno)));
    if (pipe2(err, O_CLOEXEC) != 0) {
      close(out[0]);
      close(out[1]);
      return void(r.fail(std::string("unable to create a pipe: ") + std::strerror(errno)));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);  // no agent socket leaks into the child
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);  // its own process group, killed as a whole
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);  // the agent blocks SIGTERM; the child must not
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> args, envp;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    for (auto& e : env_) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, program_.c_str(), &fa, &attr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
      close(out[0]);
      close(err[0]);
      return void(r.fail("unable to run " + argv_[0] + ": " + std::strerror(rc)));
    }

    r.stage("exit");
    std::string stdout_text, stderr_text;
    int status = 0, wait_error = 0;
    // One deadline for the whole run: the output (until both pipes close), then the exit (a child
    // may close its output early and keep running).
    const bool finished =
        drain(out[0], err[0], stdout_text, stderr_text, d) && reap(pid, status, wait_error, d);
    close(out[0]);
    close(err[0]);
    kill(-pid, SIGKILL);  // the whole group goes: on the deadline, and leftovers (daemons) after
    if (!finished) {
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      return void(r.stage("timeout").fail(
          argv_[0] + " did not finish before the deadline; killed its process group"));
    }
    if (wait_error) {  // e.g. ECHILD: the host ignores SIGCHLD, so the kernel took the status
      return void(r.fail("unable to learn " + argv_[0] +
                         "'s exit code: waitpid: " + std::strerror(wait_error)));
    }
    std::string message = first_line(stdout_text);
    if (message.empty()) message = first_line(stderr_text);
    if (WIFSIGNALED(status)) {
      return void(r.fail("unknown: " + argv_[0] + " was killed by signal " +
                         std::to_string(WTERMSIG(status)) +
                         (message.empty() ? "" : ": " + message)));
    }
    const int code = WEXITSTATUS(status);
    r.number("exit_code", VITALS_UNIT_COUNT, code, "Exit code of the command's last run.");
    if (message.empty()) message = argv_[0] + " exited with " + std::to_string(code);
    if (code == 0)
      r.pass(message);
    else if (code == 1)
      r.warn(message);
    else if (code == 2)
      r.fail(message);
    else
      r.fail("unknown: " + message);
  }

 private:
  // Reads both pipes until EOF on both (true) or the deadline (false). Keeps 4 KiB of each.
  static bool drain(int out_fd, int err_fd, std::string& out, std::string& err,
                    const vitals::Deadline& d) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    std::string* bufs[2] = {&out, &err};
    int open_count = 2;
    char buf[4096];
    while (open_count > 0) {
      const long left_ms = static_cast<long>(d.remaining().count() / 1000) - 5;
      if (left_ms <= 0) return false;
      const int n = poll(fds, 2, static_cast<int>(left_ms));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return n == 0 ? false : true;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t got = read(fds[i].fd, buf, sizeof buf);
        if (got > 0) {
          if (bufs[i]->size() < kMaxOutput)
            bufs[i]->append(buf, std::min(static_cast<size_t>(got), kMaxOutput - bufs[i]->size()));
        } else if (got == 0 || errno != EINTR) {
          fds[i].fd = -1;
          --open_count;
        }
      }
    }
    return true;
  }

  // Waits for the child to exit until the deadline (true: exited, and `status` set, or `error` if
  // waitpid failed). A pidfd makes the wait a poll; without one (old kernel, seccomp) the child is
  // checked every 10 ms. (syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C".)
  static bool reap(pid_t pid, int& status, int& error, const vitals::Deadline& d) {
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    bool exited = false;
    for (;;) {
      const pid_t got = waitpid(pid, &status, WNOHANG);
      if (got == pid || (got < 0 && errno != EINTR)) {
        if (got < 0) error = errno;
        exited = true;
        break;
      }
      const long left_ms = static_cast<long>(d.remaining().count() / 1000) - 5;
      if (left_ms <= 0) break;
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, pidfd >= 0 ? 1 : 0, static_cast<int>(pidfd >= 0 ? left_ms : std::min(left_ms, 10L)));
    }
    if (pidfd >= 0) close(pidfd);
    return exited;
  }

  std::vector<std::string> argv_;
  std::vector<std::string> env_;  // NAME=value
  std::string program_;           // the file argv_[0] named, found at load
};

}  // namespace

VITALS_PROBE(ExecProbe, "exec", "1.0.0",
             "Runs a command under the Nagios plugin exit-code contract (0 pass, 1 warn, 2 fail)",
             kOptions)
