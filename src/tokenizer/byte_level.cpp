#include "tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "tokenizer/utf8.h"

namespace mmx::byte_level {
namespace {

struct Tables {
  std::array<std::string, 256> char_of_byte;
  std::array<int16_t, 324> byte_of_char;  // indexed by code point; the alphabet ends at U+0143

  Tables() {
    byte_of_char.fill(-1);
    uint32_t shifted = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? uint32_t(b) : shifted++;
      utf8::append(char_of_byte[b], cp);
      byte_of_char[cp] = int16_t(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& char_of_byte(unsigned char b) { return tables().char_of_byte[b]; }

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += char_of_byte(static_cast<unsigned char>(c));
  return out;
}

bool decode(std::string_view token, std::string& out) {
  if (!utf8::is_valid(token)) return false;
  const Tables& t = tables();
  out.clear();
  size_t pos = 0;
  while (pos < token.size()) {
    const uint32_t cp = utf8::next(token, pos);
    if (cp >= t.byte_of_char.size() || t.byte_of_char[cp] < 0) return false;
    out.push_back(char(t.byte_of_char[cp]));
  }
  return true;
}

}  // namespace mmx::byte_level
