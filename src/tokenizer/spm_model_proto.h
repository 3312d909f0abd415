// The parts of sentencepiece's ModelProto this library reads or adjusts, handled directly in
// the protobuf wire format (the system sentencepiece package ships no generated proto
// headers). Only the fields named here are interpreted; everything else is copied as is.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace mmx::spm_proto {

// ModelProto.SentencePiece.Type
enum PieceType : int {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

struct Piece {
  std::string text;
  int type = Normal;
};

struct ModelInfo {
  std::vector<Piece> pieces;
  bool add_dummy_prefix = true;  // NormalizerSpec defaults
  bool remove_extra_whitespaces = true;
};

// Throws Code::Format naming `where` when `bytes` is not a well-formed model.
ModelInfo parse(std::string_view bytes, const std::string& where);

// The same model with every USER_DEFINED piece turned UNUSED: sentencepiece then no longer
// matches those pieces in text, so they are encoded as ordinary text.
std::string with_user_defined_unused(std::string_view bytes);

// The same model without the dummy "▁" prefix, for text that continues after a special token.
std::string without_dummy_prefix(std::string_view bytes);

}  // namespace mmx::spm_proto
