// tcp: can a TCP connection to host:port be made within the deadline?
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <vitals/net.hpp>
#include <vitals/probe.hpp>

#include <chrono>
#include <stdexcept>

namespace {

const vitals_option kOptions[] = {
    {"host", VITALS_OPT_STRING, "127.0.0.1", "Host name or address to connect to", 0, 0},
    {"port", VITALS_OPT_INT, nullptr, "TCP port", 1, 0},
};

class TcpProbe {
 public:
  TcpProbe(const vitals::Options& o, const vitals::Host&)
      : host_(o.str("host")), port_(o.integer("port")) {
    if (port_ < 1 || port_ > 65535)
      throw std::runtime_error("port must be between 1 and 65535, got " + std::to_string(port_));
  }

  void run(const vitals::Deadline& d, vitals::Result& r) {
    const std::string where = host_ + ":" + std::to_string(port_);
    r.stage("connect");
    const auto start = std::chrono::steady_clock::now();
    try {
      // The name lookup counts against the deadline too (Poco's has no bound of its own).
      Poco::Net::SocketAddress addr(vitals::resolve(host_, d), static_cast<Poco::UInt16>(port_));
      Poco::Net::StreamSocket socket;
      socket.connect(addr,
                     Poco::Timespan(d.remaining_at_least(std::chrono::microseconds(1)).count()));
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      r.number("connect", VITALS_UNIT_SECONDS, secs, "Time to establish the TCP connection.");
      r.pass("connected to " + where);
    } catch (const vitals::DeadlineExceeded& e) {
      r.stage("resolve").fail(e.what());
    } catch (const std::runtime_error&) {  // resolve()
      r.stage("resolve").fail("unable to resolve " + host_ + ": host not found");
    } catch (const Poco::TimeoutException&) {
      r.fail("unable to connect to " + where + ": timed out");
    } catch (const Poco::Net::ConnectionRefusedException&) {
      r.fail("unable to connect to " + where + ": connection refused");
    } catch (const Poco::Exception& e) {
      r.fail("unable to connect to " + where + ": " + e.displayText());
    }
  }

 private:
  std::string host_;
  long long port_;
};

}  // namespace

VITALS_PROBE(TcpProbe, "tcp", "1.0.0", "Connects to a TCP port within the deadline", kOptions)
