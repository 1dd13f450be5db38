#include "status.hpp"

#include <Poco/JSON/ParseHandler.h>
#include <Poco/JSON/Parser.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "check.hpp"
#include "history.hpp"

namespace vitals {

namespace {

// Characters on a terminal, near enough: UTF-8 continuation bytes take no column.
std::size_t columns(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string text(const Poco::JSON::Object::Ptr& o, const std::string& key) {
  if (!o->has(key) || o->isNull(key)) return "";
  return o->getValue<std::string>(key);
}

// "+" pass, "~" warn, "x" fail; oldest first.
std::string strip(const Poco::JSON::Array::Ptr& runs) {
  std::string out;
  if (!runs) return out;
  for (std::size_t i = runs->size(); i-- > 0;) {
    const std::string s =
        runs->getObject(static_cast<unsigned>(i))->getValue<std::string>("status");
    out += s == "pass" ? '+' : s == "warn" ? '~' : 'x';
  }
  return out;
}

std::string ago(const std::string& rfc3339_time) {
  int y, mo, d, h, mi;
  double sec;
  if (std::sscanf(rfc3339_time.c_str(), "%d-%d-%dT%d:%d:%lfZ", &y, &mo, &d, &h, &mi, &sec) != 6)
    return rfc3339_time;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = static_cast<int>(sec);
  const long long s =
      std::max<long long>(0, static_cast<long long>(std::time(nullptr) - timegm(&tm)));
  if (s < 90) return std::to_string(s) + "s ago";
  if (s < 5400) return std::to_string((s + 30) / 60) + "m ago";
  if (s < 129600) return std::to_string((s + 1800) / 3600) + "h ago";
  return std::to_string((s + 43200) / 86400) + "d ago";
}

const char* colour_of(const std::string& status) {
  if (status == "pass" || status == "healthy") return "\033[32m";
  if (status == "warn" || status == "degraded") return "\033[33m";
  if (status == "fail" || status == "unhealthy") return "\033[31m";
  return "\033[2m";
}

}  // namespace

std::optional<std::string> format_status(const std::string& health_json, const std::string& where,
                                         bool colour, std::string& error) {
  Poco::JSON::Object::Ptr health;
  try {
    // In the order of the config file, as /health lists them.
    Poco::JSON::Parser parser(new Poco::JSON::ParseHandler(true));
    health = parser.parse(health_json).extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::Exception& e) {
    error = "unable to read the answer of " + where + ": " + e.displayText();
    return std::nullopt;
  } catch (const std::exception& e) {
    error = "unable to read the answer of " + where + ": " + e.what();
    return std::nullopt;
  }
  try {
    const std::string overall = health->getValue<std::string>("status");
    const bool ready = health->getValue<bool>("ready");
    const auto probes = health->getObject("probes");
    std::vector<std::vector<std::string>> rows = {
        {"PROBE", "STATUS", "TIER", "GATES", "STAGE", "SINCE", "RUNS", "MESSAGE"}};
    std::size_t passing = 0;
    for (const auto& name : probes->getNames()) {  // sorted by name
      const auto p = probes->getObject(name);
      const std::string status = text(p, "status");
      passing += status == "pass";
      std::string message = !p->has("stage") || p->isNull("stage") ? "(no result yet)"
                            : p->has("message")                    ? text(p, "message")
                                                                   : "(hidden)";
      if (message.size() > 80) message = std::string(cut_utf8(message, 77)) + "...";
      rows.push_back({name, status, text(p, "tier"),
                      p->getValue<bool>("gates_readiness") ? "yes" : "no", text(p, "stage"),
                      ago(text(p, "since")), strip(p->getArray("history")), message});
    }
    std::vector<std::size_t> width(rows.front().size(), 0);
    for (const auto& r : rows)
      for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], columns(r[i]));
    auto paint = [&](const std::string& word, const std::string& shown) {
      return colour ? colour_of(word) + shown + "\033[0m" : shown;
    };
    std::string out = "vitals at " + where + ": " + paint(overall, overall) + ", " +
                      (ready ? "ready" : "not ready") + ", " + std::to_string(passing) + "/" +
                      std::to_string(rows.size() - 1) + " probes passing\n";
    for (std::size_t n = 0; n < rows.size(); ++n) {
      std::string line;
      for (std::size_t i = 0; i < rows[n].size(); ++i) {
        const std::string& cell = rows[n][i];
        const std::string pad =
            i + 1 < rows[n].size() ? std::string(width[i] - columns(cell) + 2, ' ') : "";
        line += (n > 0 && i == 1 ? paint(cell, cell) : cell) + pad;
      }
      out += line + "\n";
    }
    if (rows.size() == 1) out += "(no probes configured)\n";
    out += "RUNS: oldest to newest, + pass, ~ warn, x fail\n";
    return out;
  } catch (const Poco::Exception& e) {
    error = "unexpected answer from " + where + ": " + e.displayText();
  } catch (const std::exception& e) {
    error = "unexpected answer from " + where + ": " + e.what();
  }
  return std::nullopt;
}

int run_status(const std::string& config, const std::string& url) {
  std::string host, error, body;
  int port = 0;
  if (!agent_address(config, url, host, port, error)) {
    std::printf("usage error: %s\n", error.c_str());
    return 1;
  }
  const std::string where =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  const int code = agent_get(connect_any, host, port,
                             "/health?history=" + std::to_string(kStatusRuns), body, error);
  if (code < 0) {
    std::printf("unreachable: %s\n", error.c_str());
    return 1;
  }
  const bool colour = isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR");
  const auto table = format_status(body, where, colour, error);
  if (!table) {
    std::printf("%s (HTTP %d)\n", error.c_str(), code);
    return 1;
  }
  std::fputs(table->c_str(), stdout);
  return code == 200 ? 0 : 1;
}

}  // namespace vitals
