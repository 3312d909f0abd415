#include "tokenizer/spm_model_proto.h"

#include <cstdint>
#include <functional>

#include "core/error.h"

namespace mmx::spm_proto {
namespace {

// ModelProto field numbers.
constexpr uint32_t kPieces = 1, kNormalizerSpec = 3;
// ModelProto.SentencePiece and NormalizerSpec field numbers.
constexpr uint32_t kPieceText = 1, kPieceType = 3;
constexpr uint32_t kAddDummyPrefix = 3, kRemoveExtraWhitespaces = 4;
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

struct Field {
  uint32_t number, wire;
  uint64_t value;            // varints
  std::string_view payload;  // length-delimited fields
  std::string_view raw;      // the whole field, key included
};

struct MalformedProto {};

uint64_t read_varint(std::string_view s, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= s.size()) throw MalformedProto{};
    const auto b = static_cast<unsigned char>(s[pos++]);
    v |= uint64_t(b & 0x7F) << shift;
    if (b < 0x80) return v;
  }
  throw MalformedProto{};
}

void for_each_field(std::string_view msg, const std::function<void(const Field&)>& on_field) {
  size_t pos = 0;
  while (pos < msg.size()) {
    const size_t start = pos;
    const uint64_t key = read_varint(msg, pos);
    Field f{uint32_t(key >> 3), uint32_t(key & 7), 0, {}, {}};
    if (f.number == 0) throw MalformedProto{};
    if (f.wire == kVarint) {
      f.value = read_varint(msg, pos);
    } else if (f.wire == kFixed64 || f.wire == kFixed32) {
      const size_t n = f.wire == kFixed64 ? 8 : 4;
      if (msg.size() - pos < n) throw MalformedProto{};
      pos += n;
    } else if (f.wire == kLengthDelimited) {
      const uint64_t n = read_varint(msg, pos);
      if (n > msg.size() - pos) throw MalformedProto{};
      f.payload = msg.substr(pos, size_t(n));
      pos += size_t(n);
    } else {
      throw MalformedProto{};
    }
    f.raw = msg.substr(start, pos - start);
    on_field(f);
  }
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(0x80 | (v & 0x7F)));
    v >>= 7;
  }
  out.push_back(char(v));
}

void put_field(std::string& out, uint32_t number, uint32_t wire) {
  put_varint(out, (number << 3) | wire);
}

void put_message(std::string& out, uint32_t number, const std::string& body) {
  put_field(out, number, kLengthDelimited);
  put_varint(out, body.size());
  out += body;
}

// Copies `msg`, letting `edit` replace one sub-message (field `number`) by its new body.
std::string rewrite(std::string_view msg, uint32_t number,
                    const std::function<std::string(std::string_view)>& edit, bool add_if_absent) {
  std::string out;
  bool seen = false;
  for_each_field(msg, [&](const Field& f) {
    if (f.number == number && f.wire == kLengthDelimited) {
      seen = true;
      put_message(out, number, edit(f.payload));
    } else {
      out.append(f.raw);
    }
  });
  if (!seen && add_if_absent) put_message(out, number, edit({}));
  return out;
}

// `msg` with varint field `number` set to `value` (earlier copies dropped).
std::string set_varint(std::string_view msg, uint32_t number, uint64_t value) {
  std::string out;
  for_each_field(msg, [&](const Field& f) {
    if (!(f.number == number && f.wire == kVarint)) out.append(f.raw);
  });
  put_field(out, number, kVarint);
  put_varint(out, value);
  return out;
}

}  // namespace

ModelInfo parse(std::string_view bytes, const std::string& where) {
  ModelInfo info;
  try {
    for_each_field(bytes, [&](const Field& f) {
      if (f.number == kPieces && f.wire == kLengthDelimited) {
        Piece p;
        for_each_field(f.payload, [&](const Field& pf) {
          if (pf.number == kPieceText && pf.wire == kLengthDelimited)
            p.text = std::string(pf.payload);
          if (pf.number == kPieceType && pf.wire == kVarint) p.type = int(pf.value);
        });
        if (p.type < Normal || p.type > Byte) throw MalformedProto{};
        info.pieces.push_back(std::move(p));
      } else if (f.number == kNormalizerSpec && f.wire == kLengthDelimited) {
        for_each_field(f.payload, [&](const Field& nf) {
          if (nf.number == kAddDummyPrefix && nf.wire == kVarint)
            info.add_dummy_prefix = nf.value != 0;
          if (nf.number == kRemoveExtraWhitespaces && nf.wire == kVarint)
            info.remove_extra_whitespaces = nf.value != 0;
        });
      }
    });
  } catch (const MalformedProto&) {
    fail(Code::Format, where + ": not a sentencepiece model (malformed protobuf)");
  }
  MMX_CHECK(!info.pieces.empty(), Code::Format, where + ": not a sentencepiece model (no pieces)");
  return info;
}

std::string with_user_defined_unused(std::string_view bytes) {
  return rewrite(
      bytes, kPieces,
      [](std::string_view piece) {
        int type = Normal;
        for_each_field(piece, [&](const Field& f) {
          if (f.number == kPieceType && f.wire == kVarint) type = int(f.value);
        });
        return set_varint(piece, kPieceType, type == UserDefined ? Unused : type);
      },
      false);
}

std::string without_dummy_prefix(std::string_view bytes) {
  return rewrite(
      bytes, kNormalizerSpec,
      [](std::string_view spec) { return set_varint(spec, kAddDummyPrefix, 0); }, true);
}

}  // namespace mmx::spm_proto
