// Chat formats: M1 against the Jinja template of the real M1 release (rendered by
// tools/tokenizer_fixtures/make_tokenizer_fixtures.py), Text-01 per model-spec §9, errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using mmx::ChatFormat;
using mmx::ChatStyle;
using mmx::Code;
using mmx_test::data_path;
using mmx_test::read_file;
using mmx_test::shared_path;
using mmx_test::TempDir;
using mmx_test::write_file;
using nlohmann::ordered_json;

namespace {

ChatFormat format(ChatStyle style) {
  ChatFormat f;
  f.style = style;
  return f;
}

std::string error_of(const ChatFormat& f, const std::string& messages,
                     const std::string& tools = "") {
  try {
    f.apply(messages, true, tools);
  } catch (const mmx::Error& e) {
    EXPECT_EQ(e.code(), Code::InvalidArgument) << e.what();
    return e.what();
  }
  return "accepted";
}

TEST(ChatM1, MatchesReleaseTemplate) {
  const auto cases =
      ordered_json::parse(read_file(data_path("tokenizer/chat_m1_cases.json")))["cases"];
  ASSERT_GE(cases.size(), 5u);
  const ChatFormat m1 = format(ChatStyle::M1);
  for (const auto& c : cases) {
    const std::string tools = c.contains("tools") ? c["tools"].dump() : "";
    EXPECT_EQ(m1.apply(c["messages"].dump(), c["add_generation_prompt"].get<bool>(), tools),
              c["expected"].get<std::string>())
        << c["messages"].dump();
  }
}

TEST(ChatM1, StringContentEqualsSingleTextPart) {
  const ChatFormat m1 = format(ChatStyle::M1);
  EXPECT_EQ(m1.apply(R"([{"role":"system","content":"S"},{"role":"user","content":"Hi"}])", true),
            m1.apply(R"([{"role":"system","content":[{"type":"text","text":"S"}]},
                         {"role":"user","content":[{"type":"text","text":"Hi"}]}])",
                     true));
}

TEST(ChatText01, TurnsInOrder) {
  const ChatFormat t = format(ChatStyle::Text01);
  const std::string out = t.apply(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]},
      {"role": "assistant", "content": "Hello."},
      {"role": "user", "content": "Bye"}])",
                                  true);
  EXPECT_EQ(out,
            "<beginning_of_sentence>system ai_setting=assistant\nBe brief.<end_of_sentence>\n"
            "<beginning_of_sentence>user name=user\nHi!<end_of_sentence>\n"
            "<beginning_of_sentence>ai name=assistant\nHello.<end_of_sentence>\n"
            "<beginning_of_sentence>user name=user\nBye<end_of_sentence>\n"
            "<beginning_of_sentence>ai name=assistant\n");
  EXPECT_EQ(t.apply("[]", false), "");
  EXPECT_EQ(t.apply(R"([{"role":"user","content":"x"}])", false),
            "<beginning_of_sentence>user name=user\nx<end_of_sentence>\n");
}

TEST(ChatErrors, MalformedInput) {
  const ChatFormat m1 = format(ChatStyle::M1), t = format(ChatStyle::Text01);
  auto has = [](const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
  };
  EXPECT_PRED2(has, error_of(m1, "[{\"role\": "), "messages: not valid JSON");
  EXPECT_PRED2(has, error_of(m1, "{\"role\": \"user\"}"), "must be a JSON list");
  EXPECT_PRED2(has, error_of(m1, "[\"hi\"]"), "message 0: not an object");
  EXPECT_PRED2(has, error_of(m1, R"([{"content": "x"}])"), "message 0: needs a string \"role\"");
  EXPECT_PRED2(has, error_of(m1, R"([{"role": "user"}])"), "needs \"content\"");
  EXPECT_PRED2(has, error_of(m1, R"([{"role": "user", "content": null}])"), "needs \"content\"");
  EXPECT_PRED2(has, error_of(m1, R"([{"role": "user", "content": 5}])"),
               "must be a string or a list");
  EXPECT_PRED2(has,
               error_of(m1, R"([{"role":"user","content":"a"},{"role":"robot","content":"x"}])"),
               "message 1: unknown role \"robot\"");
  EXPECT_PRED2(has, error_of(m1, R"([{"role":"user","content":[{"type":"image","url":"x.png"}]}])"),
               "type \"image\" is not supported");
  EXPECT_PRED2(has, error_of(m1, R"([{"role":"user","content":[{"type":"text"}]}])"),
               "needs a string \"text\"");
  EXPECT_PRED2(has, error_of(m1, R"([{"role":"tool","content":"plain"}])"), "tool content");
  EXPECT_PRED2(has, error_of(m1, R"([{"role":"tool","content":[{"text":"x"}]}])"),
               "needs string \"name\" and \"text\"");
  EXPECT_PRED2(has, error_of(m1, R"([])", "{\"name\": 1}"), "tools: must be a JSON list");
  EXPECT_PRED2(has, error_of(m1, R"([])", "[oops"), "tools: not valid JSON");
  EXPECT_PRED2(has, error_of(t, R"([{"role":"tool","content":[{"name":"a","text":"b"}]}])"),
               "no tool role");
  EXPECT_PRED2(has, error_of(t, R"([])", R"([{"name": "f"}])"), "no tools block");
  EXPECT_PRED2(has, error_of(m1, "[{\"role\":\"user\",\"content\":\"\xff\"}]"), "not valid JSON");
}

TEST(ChatStyleDetection, FromTemplateOrModelType) {
  const std::string m1_config =
      read_file(shared_path("reference/minimax-m1/tokenizer_config.json"));
  TempDir dir;
  EXPECT_EQ(ChatFormat::for_model(dir.path(), "minimax_m1").style, ChatStyle::M1);
  EXPECT_EQ(ChatFormat::for_model(dir.path(), "minimax_text_01").style, ChatStyle::Text01);
  EXPECT_EQ(ChatFormat::for_model(dir.path(), "minimax").style, ChatStyle::Text01);
  write_file(dir.file("tokenizer_config.json"), m1_config);
  EXPECT_EQ(ChatFormat::for_model(dir.path(), "minimax").style, ChatStyle::M1);
  write_file(dir.file("tokenizer_config.json"),
             R"({"chat_template": "{% for m in messages %}<beginning_of_sentence>{% endfor %}"})");
  EXPECT_EQ(ChatFormat::for_model(dir.path(), "minimax_m1").style, ChatStyle::Text01);
  write_file(dir.file("chat_template.jinja"), "{{ '<begin_of_document>' }}");
  EXPECT_EQ(ChatFormat::for_model(dir.path(), "minimax").style, ChatStyle::M1);
  write_file(dir.file("chat_template.jinja"), "");
  write_file(dir.file("tokenizer_config.json"), "{broken");
  EXPECT_THROW(ChatFormat::for_model(dir.path(), "minimax"), mmx::Error);
}

}  // namespace
