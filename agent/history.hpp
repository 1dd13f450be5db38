// A probe's recent past, in memory: its last N runs and its last effective-status transitions.
// Entries in rings of N; a message is cut to kHistoryMessageMax bytes and an entry saying what the
// one before it said shares its text, so the memory a probe's history can take is bounded by N
// whatever its plugin says, and a probe repeating itself (the usual case) takes ~48 bytes a run.
// Thread-safe: the scheduler records while requests read.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <vitals/probe.h>

namespace vitals {

enum class Status;  // probe.hpp
using WallTime = std::chrono::system_clock::time_point;

inline constexpr std::size_t kHistoryDefault = 120;
inline constexpr std::size_t kHistoryMax = 10'000;
inline constexpr std::size_t kHistoryMessageMax = 160;  // bytes, cut at a character boundary
// Transitions are kept for /events even with `history: 0` (then only the stream sees them).
inline constexpr std::size_t kTransitionsMin = 16;

// Immutable text, shared by the entries that say the same thing.
class SharedText {
 public:
  // `s` cut to `max` bytes (never inside a UTF-8 sequence); if that is what `same` holds, its
  // storage is shared instead of copied.
  void assign(std::string_view s, std::size_t max, const SharedText& same);
  std::string_view view() const { return text_ ? std::string_view(*text_) : std::string_view(); }
  // The most one text of at most `max` bytes can take beyond sizeof(SharedText).
  static constexpr std::size_t max_bytes(std::size_t max) { return 48 + max + 1; }

 private:
  std::shared_ptr<const std::string> text_;
};

struct HistoryRun {
  WallTime at{};
  Status status{};  // the run's own result: pass, warn or fail
  float duration_ms = 0;
  SharedText stage;    // at most VITALS_STAGE_MAX bytes
  SharedText message;  // at most kHistoryMessageMax bytes
};

struct HistoryTransition {
  std::uint64_t seq = 0;  // increasing across every probe of the process: orders /events
  WallTime at{};
  Status from{}, to{};  // effective statuses
  SharedText stage;     // of the run that made it
  SharedText message;
};

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view cut_utf8(std::string_view s, std::size_t max);

class History {
 public:
  explicit History(std::size_t capacity = kHistoryDefault);

  // One recorded run; a transition too if the effective status went from `before` to `after`.
  void record(WallTime at, Status status, double duration_s, std::string_view stage,
              std::string_view message, Status before, Status after);
  // A reload with another `history:`: keeps the newest entries that fit.
  void resize(std::size_t capacity);

  std::size_t capacity() const;
  // Newest first, at most `n` (and at most capacity()).
  std::vector<HistoryRun> runs(std::size_t n) const;
  std::vector<HistoryTransition> transitions(std::size_t n) const;
  // Oldest first: the transitions with seq > `seq` that are still kept.
  std::vector<HistoryTransition> transitions_after(std::uint64_t seq) const;
  // The seq of the newest transition of any probe (0: none yet). Cheap: one atomic load.
  static std::uint64_t last_seq();
  // The most memory the rings can take at this capacity.
  std::size_t max_bytes() const;

 private:
  template <class T>
  struct Ring {
    std::vector<T> items;  // grows to `cap`, then wraps
    std::size_t cap = 0;
    std::size_t next = 0;  // where the next item goes once full
    void push(const T& item);
    void resize(std::size_t capacity);
    std::vector<T> newest(std::size_t n) const;
    const T* last() const;  // the newest item, if any
  };

  mutable std::mutex mutex_;
  std::size_t capacity_;
  Ring<HistoryRun> runs_;
  Ring<HistoryTransition> transitions_;
  static std::atomic<std::uint64_t> seq_;
};

}  // namespace vitals
