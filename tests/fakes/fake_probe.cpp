// One fake plugin source, built several ways (see CMakeLists.txt) to walk the loader's refusal
// ladder and to misbehave under a running agent: throw, hang (in run or in create), return right
// at the deadline, take long to load.
#include <vitals/probe.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR VITALS_ABI_MAJOR
#endif
#ifndef FAKE_ABI_MINOR
#define FAKE_ABI_MINOR VITALS_ABI_MINOR
#endif
#ifdef FAKE_V2  // a new build of fake-ok, to replace it under a running agent
#define FAKE_NAME "fake-ok"
#define FAKE_VERSION "0.0.2"
#endif
#ifndef FAKE_NAME
#define FAKE_NAME FAKE_ID
#endif
#ifndef FAKE_VERSION
#define FAKE_VERSION "0.0.1"
#endif

namespace {

#ifdef FAKE_LOAD_GATE
// Loading this plugin lasts until the file named by $VITALS_FAKE_LOAD_GATE exists (a minute at
// most): a plugin slow to load, as one whose libraries take long to map and initialize.
[[maybe_unused]] const bool kLoadGateOpened = [] {
  const char* gate = std::getenv("VITALS_FAKE_LOAD_GATE");
  for (int i = 0; gate && i < 6000 && !std::ifstream(gate); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return true;
}();
#endif

const vitals_option kOptions[] = {
    {"result", VITALS_OPT_STRING, "pass", "pass, warn or fail; or the path of a file holding one",
     0, 0},
    {"token", VITALS_OPT_STRING, "", "A secret echoed into the message, to test scrubbing", 0, 1},
    {"sleep", VITALS_OPT_DURATION, "0ms", "How long each run takes", 0, 0},
    {"message", VITALS_OPT_STRING, "",
     "Returned (and logged) instead of the result word; \\xNN escapes become raw bytes", 0, 0},
    {"stage", VITALS_OPT_STRING, "fake", "The stage each run reports", 0, 0},
    {"count", VITALS_OPT_STRING, "", "A file each run appends a line to (to count runs)", 0, 0},
};

// "\xff\x0a" -> the bytes 0xff 0x0a: lets a test hand the host any bytes through YAML.
std::string unescape(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in.compare(i, 2, "\\x") == 0 && i + 4 <= in.size()) {
      out += static_cast<char>(std::stoi(in.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      out += in[i];
    }
  }
  return out;
}

class FakeProbe {
 public:
  FakeProbe(const vitals::Options& o, const vitals::Host& host)
      : result_(o.str("result")),
        token_(o.str("token")),
        message_(unescape(o.str("message"))),
        stage_(o.str("stage", "fake")),
        count_(o.str("count")),
        sleep_(o.duration("sleep")),
        host_(host) {
#ifdef FAKE_CREATE_BLOCKS
    std::this_thread::sleep_for(std::chrono::hours(1));
#endif
    host.info("created");
  }
  void run(const vitals::Deadline& deadline, vitals::Result& r) {
#ifdef FAKE_THROWS
    r.stage("throwing");
    throw std::runtime_error("thrown on purpose");
#endif
#ifdef FAKE_HANGS
    r.stage("hanging");
    std::this_thread::sleep_for(std::chrono::hours(1));
#endif
#ifdef FAKE_AT_DEADLINE
    // Keeps its deadline to the letter: returns right at it.
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline.ns())));
#else
    (void)deadline;
#endif
    std::this_thread::sleep_for(sleep_);
    std::string want = result_;
    if (want != "pass" && want != "warn" && want != "fail") {
      std::ifstream f(want);
      if (!(f >> want)) want = "fail";
    }
    if (!count_.empty()) std::ofstream(count_, std::ios::app) << "run\n";
    r.stage(stage_.c_str());
    r.number("runs", VITALS_UNIT_COUNT, static_cast<double>(++runs_), "Runs so far.");
    std::string message =
        (message_.empty() ? want : message_) + (token_.empty() ? "" : " token=" + token_);
#ifdef FAKE_V2
    message += " (" FAKE_VERSION ")";
#endif
    if (!message_.empty()) host_.warn(message);
    if (want == "pass")
      r.pass(message);
    else if (want == "warn")
      r.warn(message);
    else
      r.fail(message);
  }

 private:
  std::string result_, token_, message_, stage_, count_;
  std::chrono::milliseconds sleep_;
  vitals::Host host_;
  long runs_ = 0;
};

#ifdef FAKE_BIGGER_STRUCT
struct BiggerDescriptor {
  vitals_plugin base;
  void* extra[4];
};
#endif

}  // namespace

#ifndef FAKE_NO_ENTRY
extern "C" VITALS_EXPORT const vitals_plugin* vitals_probe_entry(uint32_t host_major) {
#ifdef FAKE_REFUSE
  (void)host_major;
  return nullptr;
#else
  static vitals_plugin desc = [] {
    vitals_plugin d =
        vitals::describe<FakeProbe>(FAKE_NAME, FAKE_VERSION, "Fake probe for tests", kOptions);
    d.abi_major = FAKE_ABI_MAJOR;
    d.abi_minor = FAKE_ABI_MINOR;
#ifdef FAKE_MISSING_RUN
    d.run = nullptr;
#endif
#ifdef FAKE_BAD_NAME
    d.name = "My Plug\"in";
#endif
#ifdef FAKE_NULL_NAME
    d.name = nullptr;
#endif
#ifdef FAKE_NULL_OPTIONS
    d.options = nullptr;  // option_count stays
#endif
#ifdef FAKE_NO_OPTIONS
    d.options = nullptr;  // valid: no options at all
    d.option_count = 0;
#endif
#ifdef FAKE_BIGGER_STRUCT
    d.struct_size = sizeof(BiggerDescriptor);
#endif
    return d;
  }();
  (void)host_major;  // answer whatever the host speaks: the host must check abi_major itself
  return &desc;
#endif
}
#else
extern "C" VITALS_EXPORT int not_a_probe(void) {
  return 0;
}
#endif
