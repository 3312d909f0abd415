#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace mmx {

std::string StreamDecoder::push(int32_t id) {
  pending_ += first_ ? tok_.token_bytes_at_start(id) : tok_.token_bytes(id);
  first_ = false;
  std::string out;
  pending_.erase(0, utf8::sanitize(pending_, false, out));
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8::sanitize(pending_, true, out);
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace mmx
