// Fuzz target: the bytes a client sends, as the HTTP event loop reads them. The input is split
// in two at a point picked by its first byte (the rest is the stream), as a socket may deliver it.
// Invariants beyond "no crash":
//  - streaming is consistent: a head complete in the first part is the same head, of the same
//    length, in the whole stream; malformed stays malformed with more bytes; a head that ends
//    inside the first part is complete there too;
//  - every complete head is answered with an HTTP/1.1 status line and an empty line;
//  - what the parser says it used is never more than it was given;
//  - whatever the simple head reader takes, Poco reads as the same head (on each head found, and
//    on the raw bytes as one head).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "http.hpp"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_wire: invariant violated: %s\n", what);
    std::abort();
  }
}

const vitals::HttpBackend kBackend{[] { return vitals::Snapshot{}; },
                                   [] { return vitals::AgentFacts{"0.0.0"}; }, [] { return true; }};

// The fast path's contract: what read_simple_head takes, Poco takes too, as the same head.
void check_readers(std::string_view head) {
  vitals::RequestHead simple, poco;
  if (!vitals::read_simple_head(head, simple)) return;
  require(vitals::read_head_with_poco(head, poco) == vitals::HeadParse::Complete,
          "the simple reader took a head Poco refuses");
  require(simple.method == poco.method && simple.uri == poco.uri &&
              simple.known_version == poco.known_version && simple.keep_alive == poco.keep_alive &&
              simple.has_body == poco.has_body,
          "the simple reader and Poco read different heads");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t split = size > 1 ? data[0] % size : 0;

  std::size_t pos = 0;
  while (pos <= stream.size()) {
    const std::string_view rest = stream.substr(pos);
    const std::string_view part = rest.substr(0, split);
    vitals::RequestHead whole_head, part_head;
    std::size_t whole_used = 0, part_used = 0;
    const auto whole = vitals::parse_request_head(rest, whole_head, whole_used);
    const auto first = vitals::parse_request_head(part, part_head, part_used);
    check_readers(rest);
    if (whole == vitals::HeadParse::Complete) {
      const std::size_t start = rest.starts_with("\r\n") ? 2 : rest.starts_with('\n') ? 1 : 0;
      check_readers(rest.substr(start, whole_used - start));
    }
    if (first == vitals::HeadParse::Complete) {
      require(whole == vitals::HeadParse::Complete, "a complete head became incomplete");
      require(part_used == whole_used, "more bytes changed the head's length");
      require(part_head.method == whole_head.method && part_head.uri == whole_head.uri,
              "more bytes changed the head");
    }
    if (first == vitals::HeadParse::Malformed) {
      require(whole == vitals::HeadParse::Malformed, "more bytes repaired a malformed head");
    }
    if (whole == vitals::HeadParse::Complete && whole_used <= part.size()) {
      require(first == vitals::HeadParse::Complete, "a head ending in the first part was missed");
    }
    if (whole != vitals::HeadParse::Complete) {
      if (whole == vitals::HeadParse::Malformed) {
        require(vitals::respond_malformed().rfind("HTTP/1.1 400 ", 0) == 0, "400 status line");
      }
      break;
    }
    require(whole_used > 0 && whole_used <= rest.size(), "used is out of range");
    bool close = false;
    const std::string answer = vitals::respond(whole_head, kBackend, close).bytes();
    require(answer.rfind("HTTP/1.1 ", 0) == 0, "status line");
    require(answer.find("\r\n\r\n") != std::string::npos, "end of the response head");
    if (close) break;
    pos += whole_used;
  }
  return 0;
}
