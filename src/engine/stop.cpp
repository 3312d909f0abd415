#include "engine/stop.h"

#include <algorithm>

namespace mmx {

StopStringFilter::StopStringFilter(std::vector<std::string> stop_strings)
    : stops_(std::move(stop_strings)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string StopStringFilter::push(const std::string& delta, bool* stopped) {
  *stopped = stopped_;
  if (stopped_) return {};
  held_ += delta;
  if (stops_.empty()) return std::move(held_);

  // A match can only start inside held_: anything that could have begun one was held.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    std::string out = held_.substr(0, first);
    held_.clear();
    stopped_ = *stopped = true;
    return out;
  }
  // Hold the longest suffix that is a proper prefix of some stop string. It starts where a
  // stop string's first byte (a UTF-8 lead byte) sits, so the split keeps characters whole.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    size_t longest = std::min(s.size() - 1, held_.size());
    for (size_t len = longest; len > hold; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopStringFilter::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return stopped_ ? std::string() : out;
}

}  // namespace mmx
