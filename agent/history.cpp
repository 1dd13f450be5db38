#include "history.hpp"

#include <algorithm>

#include "probe.hpp"

namespace vitals {

std::atomic<std::uint64_t> History::seq_{0};

std::string_view cut_utf8(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t end = max;
  // Step back over continuation bytes (10xxxxxx) to the start of the sequence that did not fit.
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

void SharedText::assign(std::string_view s, std::size_t max, const SharedText& same) {
  s = cut_utf8(s, max);
  if (same.text_ && same.view() == s)
    text_ = same.text_;
  else
    text_ = std::make_shared<const std::string>(s);
}

template <class T>
void History::Ring<T>::push(const T& item) {
  if (cap == 0) return;
  if (items.size() < cap) {
    // Grow in steps up to exactly `cap`: a probe that ran a few times holds a few entries.
    if (items.size() == items.capacity())
      items.reserve(std::min(cap, std::max<std::size_t>(8, 2 * items.size())));
    items.push_back(item);
    return;
  }
  items[next] = item;
  next = (next + 1) % cap;
}

template <class T>
const T* History::Ring<T>::last() const {
  if (items.empty()) return nullptr;
  return &items[items.size() < cap ? items.size() - 1 : (next + items.size() - 1) % items.size()];
}

template <class T>
std::vector<T> History::Ring<T>::newest(std::size_t n) const {
  std::vector<T> out;
  n = std::min(n, items.size());
  out.reserve(n);
  // Once full, the newest item sits just before `next`; before that, at the back.
  const std::size_t newest_at = items.size() < cap ? items.size() : next + items.size();
  for (std::size_t i = 1; i <= n; ++i) out.push_back(items[(newest_at - i) % items.size()]);
  return out;
}

template <class T>
void History::Ring<T>::resize(std::size_t capacity) {
  if (capacity == cap) return;
  std::vector<T> kept = newest(capacity);
  std::reverse(kept.begin(), kept.end());
  items = std::vector<T>();
  items.reserve(kept.size());
  items.assign(kept.begin(), kept.end());
  cap = capacity;
  next = 0;
}

namespace {
std::size_t transitions_kept(std::size_t capacity) {
  return std::max(capacity, kTransitionsMin);
}
}  // namespace

History::History(std::size_t capacity) : capacity_(capacity) {
  runs_.cap = capacity;
  transitions_.cap = transitions_kept(capacity);
}

void History::record(WallTime at, Status status, double duration_s, std::string_view stage,
                     std::string_view message, Status before, Status after) {
  std::lock_guard lock(mutex_);
  if (capacity_ == 0 && before == after) return;
  // The texts of the newest run, to share when this run says the same.
  const HistoryRun* prev = runs_.last();
  const HistoryRun none;
  const HistoryRun& same = prev ? *prev : none;
  HistoryRun run;
  run.stage.assign(stage, VITALS_STAGE_MAX, same.stage);
  run.message.assign(message, kHistoryMessageMax, same.message);
  if (capacity_ > 0) {
    run.at = at;
    run.status = status;
    run.duration_ms = static_cast<float>(duration_s * 1000);
    runs_.push(run);
  }
  if (before != after) {
    HistoryTransition t;
    t.seq = ++seq_;
    t.at = at;
    t.from = before;
    t.to = after;
    t.stage = run.stage;
    t.message = run.message;
    transitions_.push(t);
  }
}

void History::resize(std::size_t capacity) {
  std::lock_guard lock(mutex_);
  capacity_ = capacity;
  runs_.resize(capacity);
  transitions_.resize(transitions_kept(capacity));
}

std::size_t History::capacity() const {
  std::lock_guard lock(mutex_);
  return capacity_;
}

std::vector<HistoryRun> History::runs(std::size_t n) const {
  std::lock_guard lock(mutex_);
  return runs_.newest(std::min(n, capacity_));
}

std::vector<HistoryTransition> History::transitions(std::size_t n) const {
  std::lock_guard lock(mutex_);
  return transitions_.newest(std::min(n, capacity_));
}

std::vector<HistoryTransition> History::transitions_after(std::uint64_t seq) const {
  std::lock_guard lock(mutex_);
  // Newest first until an old one, without copying the ring (this runs for /events on each tick).
  std::vector<HistoryTransition> out;
  const auto& items = transitions_.items;
  const std::size_t size = items.size();
  const std::size_t newest_at = size < transitions_.cap ? size : transitions_.next + size;
  for (std::size_t i = 1; i <= size && items[(newest_at - i) % size].seq > seq; ++i)
    out.push_back(items[(newest_at - i) % size]);
  std::reverse(out.begin(), out.end());
  return out;
}

std::uint64_t History::last_seq() {
  return seq_.load();
}

std::size_t History::max_bytes() const {
  std::lock_guard lock(mutex_);
  // Each entry's texts, as if none were shared.
  constexpr std::size_t texts =
      SharedText::max_bytes(VITALS_STAGE_MAX) + SharedText::max_bytes(kHistoryMessageMax);
  return sizeof(History) + runs_.cap * (sizeof(HistoryRun) + texts) +
         transitions_.cap * (sizeof(HistoryTransition) + texts);
}

}  // namespace vitals
