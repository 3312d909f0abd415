// Stop strings over streamed text. Text that could be the beginning of a stop string is held
// back until the next delta decides, so a stop string is never emitted, not even in part.
#pragma once
#include <string>
#include <vector>

namespace mmx {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stop_strings = {});

  // Adds a text delta (whole UTF-8 characters) and returns what can be emitted now. When a
  // stop string is complete, returns the text before it, sets *stopped and drops the rest.
  std::string push(const std::string& delta, bool* stopped);
  // End of the stream: whatever is held back (empty after a stop).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace mmx
