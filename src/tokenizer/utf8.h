// UTF-8 helpers shared by the tokenizers and the streaming detokeniser.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mmx::utf8 {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid(std::string_view s);

// Offset of the first ill-formed byte, or s.size() when `s` is valid.
size_t first_invalid(std::string_view s);

// Copies `s` to `out`, replacing each maximal ill-formed subsequence with U+FFFD (the Unicode
// "maximal subpart" practice, the same as Python's errors="replace" and Rust's
// from_utf8_lossy). When `final` is false, a trailing sequence that is still a valid prefix
// of some character is not consumed; the return value is the number of bytes consumed.
size_t sanitize(std::string_view s, bool final, std::string& out);

// Convenience: sanitize(s, true, result).
std::string sanitized(std::string_view s);

// Appends the UTF-8 encoding of code point `cp` (must be a scalar value).
void append(std::string& out, uint32_t cp);

// Decodes the character starting at s[pos] of a VALID string; advances pos.
uint32_t next(std::string_view s, size_t& pos);

}  // namespace mmx::utf8
