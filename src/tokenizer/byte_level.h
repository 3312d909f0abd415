// GPT-2's byte-level alphabet: every byte is written as one printable Unicode character
// (printable ASCII and most of Latin-1 stand for themselves; the other 68 bytes are shifted
// to U+0100...), so that a vocabulary of strings can hold arbitrary bytes.
#pragma once
#include <string>
#include <string_view>

namespace mmx::byte_level {

// UTF-8 of the character that stands for byte `b`.
const std::string& char_of_byte(unsigned char b);

// The byte-level spelling of raw bytes (e.g. " hi" -> "Ġhi").
std::string encode(std::string_view bytes);

// Raw bytes of a byte-level spelled token. Returns false (and leaves `out` unspecified) when
// `token` holds a character outside the alphabet or is not valid UTF-8.
bool decode(std::string_view token, std::string& out);

}  // namespace mmx::byte_level
