// Just enough JSON writing for minimax-cli's --json output and for chat messages; the text
// the library returns is whole UTF-8 characters, so only ASCII needs escaping.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

namespace cli {

inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  return out + "\"";
}

// Numbers that may be unknown (NaN, a negative time) are written as null.
inline std::string json_number(double v, int decimals = 3) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

inline std::string json_ms(double seconds) {
  return seconds < 0 ? "null" : json_number(seconds * 1e3);
}

}  // namespace cli
