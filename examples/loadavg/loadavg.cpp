// An example vitals probe plugin, built out of tree against the installed SDK: the system's load
// average per CPU. No options, so VITALS_PROBE takes no option table.
#include <unistd.h>
#include <vitals/probe.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace {

class LoadavgProbe {
 public:
  // create(): check what can be checked once, cheaply, and throw to refuse (the message becomes
  // the probe's config error). Nothing here may block: it runs under the probe's timeout too.
  LoadavgProbe(const vitals::Options&, const vitals::Host& host) {
    if (!std::ifstream("/proc/loadavg")) throw std::runtime_error("/proc/loadavg is not readable");
    host.debug("loadavg probe created");
  }

  // run(): one check, finished before the deadline. Set the stage as it goes, then pass, warn or
  // fail with a one-line message.
  void run(const vitals::Deadline&, vitals::Result& r) {
    r.stage("read");
    std::ifstream in("/proc/loadavg");
    double load1 = 0, load5 = 0, load15 = 0;
    if (!(in >> load1 >> load5 >> load15)) {
      r.fail("unable to read /proc/loadavg");
      return;
    }
    const long cpus = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
    const double per_cpu = load1 / static_cast<double>(cpus);
    r.stage("load");
    r.number("load1", VITALS_UNIT_COUNT, load1, "1-minute load average");
    r.number("load1_per_cpu", VITALS_UNIT_RATIO, per_cpu, "1-minute load average per online CPU");
    std::ostringstream msg;
    msg << "load " << load1 << " " << load5 << " " << load15 << " on " << cpus << " CPUs";
    if (per_cpu > 2.0) {
      r.warn(msg.str() + ": more than 2 runnable tasks per CPU");
    } else {
      r.pass(msg.str());
    }
  }
};

}  // namespace

VITALS_PROBE(LoadavgProbe, "loadavg", "1.0.0", "Load average per CPU (warns above 2)")
