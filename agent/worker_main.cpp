// `vitals worker`: a probe worker process (docs/ISOLATION.md). Started by the agent, never by
// hand: it loads one plugin and runs the instances the agent asks for, each on a thread of its own,
// answering over the socket on fd 3 (agent/worker_wire.hpp). It exits as soon as that socket
// closes, whatever its plugin is doing. Answered by the agent executable (main.cpp) before it
// loads the core library: it loads no library of the agent's.
#include <dlfcn.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "worker_main.hpp"
#include "worker_wire.hpp"

namespace vitals {

namespace {

using namespace wire;

const vitals_plugin* g_plugin = nullptr;

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Each message is one datagram: concurrent senders never interleave.
void send_message(const void* data, size_t size) {
  (void)!::send(kWorkerFd, data, size, MSG_NOSIGNAL);
}

// One probe instance: its thread takes jobs in order (create, runs, destroy).
class Instance {
 public:
  struct Job {
    Type type;
    uint64_t deadline_ns = 0;
    std::shared_ptr<DecodedValues> values;
  };

  explicit Instance(uint32_t id) : id_(id) {
    host_.struct_size = sizeof host_;
    host_.host_ctx = this;
    host_.log = &Instance::log;
  }
  // The thread keeps its instance until destroy(); never joined: the process _exit()s.
  static std::shared_ptr<Instance> start(uint32_t id) {
    auto self = std::make_shared<Instance>(id);
    std::thread([self] { self->loop(); }).detach();
    return self;
  }

  void push(Job job) {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
    cv_.notify_one();
  }

 private:
  static void log(void* ctx, int level, const char* message) {
    auto* self = static_cast<Instance*>(ctx);
    std::string msg(sizeof(LogHeader), '\0');
    const LogHeader h{{Type::Log, self->id_}, level};
    std::memcpy(msg.data(), &h, sizeof h);
    msg += message ? std::string(message).substr(0, 4096) : "";
    send_message(msg.data(), msg.size());
  }

  void loop() {
    for (;;) {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return !jobs_.empty(); });
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      if (job.type == Type::Create) {
        CreatedReply reply{{Type::Created, id_}, 0, {}};
        reply.rc = g_plugin->create(&host_, job.values->values.data(),
                                    static_cast<uint32_t>(job.values->values.size()), &instance_,
                                    reply.err, sizeof reply.err);
        if (reply.rc != 0) instance_ = nullptr;
        send_message(&reply, sizeof reply);
      } else if (job.type == Type::Run) {
        ResultReply reply{};
        reply.h = {Type::Result, id_};
        reply.result.struct_size = sizeof reply.result;
        reply.start_ns = monotonic_ns();
        if (instance_) {
          g_plugin->run(instance_, job.deadline_ns, &reply.result);
        } else {
          reply.result.status = VITALS_FAIL;
          std::snprintf(reply.result.stage, sizeof reply.result.stage, "create");
          std::snprintf(reply.result.message, sizeof reply.result.message,
                        "no instance: create() failed");
        }
        reply.end_ns = monotonic_ns();
        send_message(&reply, sizeof reply);
      } else {  // Destroy
        if (instance_) g_plugin->destroy(instance_);
        instance_ = nullptr;
        return;
      }
    }
  }

  uint32_t id_;
  vitals_host host_{};
  void* instance_ = nullptr;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "vitals worker: %s\n", message.c_str());
  _exit(111);
}

}  // namespace

int run_worker(int argc, char** argv) {
  std::string plugin_path;
  unsigned long long data_limit = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--plugin")
      plugin_path = argv[i + 1];
    else if (flag == "--data-limit")
      data_limit = std::strtoull(argv[i + 1], nullptr, 10);
    else
      fail("unknown flag " + flag + " (workers are started by the agent)");
  }
  if (plugin_path.empty()) fail("no --plugin (workers are started by the agent)");
  if (data_limit > 0) {
    const rlimit limit{data_limit, data_limit};
    if (setrlimit(RLIMIT_DATA, &limit) != 0)
      fail(std::string("unable to limit memory: ") + std::strerror(errno));
  }
  // Small thread stacks (they count against the data limit): a worker may host thousands of
  // instances, each on a thread of its own.
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_setattr_default_np(&attr);
  pthread_attr_destroy(&attr);

  void* handle = dlopen(plugin_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) fail(std::string("unable to load ") + plugin_path + ": " + dlerror());
  auto entry = reinterpret_cast<vitals_probe_entry_fn>(dlsym(handle, VITALS_ENTRY_SYMBOL));
  const vitals_plugin* desc = entry ? entry(VITALS_ABI_MAJOR) : nullptr;
  if (!desc || !desc->create || !desc->run || !desc->destroy)
    fail(plugin_path + " is not the plugin the agent checked");
  static vitals_plugin copy{};  // zero-filled beyond the plugin's struct_size, as the agent's
  std::memcpy(&copy, desc, std::min<size_t>(desc->struct_size, sizeof copy));
  g_plugin = &copy;

  std::map<uint32_t, std::shared_ptr<Instance>> instances;
  std::string buf(kMaxMessage, '\0');
  for (;;) {
    const ssize_t n = ::recv(kWorkerFd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);  // the agent is gone or let us go: leave at once, hung threads and all
    if (static_cast<size_t>(n) < sizeof(Header)) continue;
    Header h{};
    std::memcpy(&h, buf.data(), sizeof h);
    Instance::Job job;
    job.type = h.type;
    if (h.type == Type::Create) {
      job.values = std::make_shared<DecodedValues>();
      if (!decode_values(buf.data() + sizeof h, static_cast<size_t>(n) - sizeof h, *job.values))
        fail("malformed create message");
      instances[h.probe] = Instance::start(h.probe);
    } else if (h.type == Type::Run && static_cast<size_t>(n) >= sizeof(RunRequest)) {
      RunRequest req{};
      std::memcpy(&req, buf.data(), sizeof req);
      job.deadline_ns = req.deadline_ns;
    } else if (h.type != Type::Destroy) {
      continue;
    }
    auto it = instances.find(h.probe);
    if (it == instances.end()) continue;
    it->second->push(std::move(job));
    if (h.type == Type::Destroy) instances.erase(it);
  }
}

}  // namespace vitals
