// The MiniMax chat formats (model-spec §9; M1: the chat_template of the M1 release).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

namespace mmx {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;  // keeps the key order of tool definitions

namespace {

constexpr const char* kEos = "<end_of_sentence>\n";
constexpr const char* kM1DocumentStart = "<begin_of_document>";
constexpr const char* kSystemHeader = "<beginning_of_sentence>system ai_setting=assistant\n";
constexpr const char* kUserHeader = "<beginning_of_sentence>user name=user\n";
constexpr const char* kAssistantHeader = "<beginning_of_sentence>ai name=assistant\n";
constexpr const char* kToolHeader = "<beginning_of_sentence>tool name=tools\n";
constexpr const char* kToolsHeader =
    "<beginning_of_sentence>system tool_setting=tools\nYou are provided with these tools:\n"
    "<tools>\n";
// The release template writes {''name'': ...}; jinja joins the adjacent string literals, so the
// rendered text has no quotes around name and arguments.
constexpr const char* kToolsFooter =
    "</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML "
    "tags, and provide tool-name and json-object of arguments, following the format below:\n"
    "<tool_calls>\n{name: <tool-name-1>, arguments: <args-json-object-1>}\n...\n"
    "</tool_calls><end_of_sentence>\n";

enum class Role { System, User, Assistant, Tool };

struct Message {
  Role role;
  std::string text;                                          // system, user, assistant
  std::vector<std::pair<std::string, std::string>> results;  // tool: (name, text)
};

Json parse_argument(const std::string& text, const char* what) {
  try {
    return Json::parse(text);
  } catch (const Json::exception& e) {
    fail(Code::InvalidArgument, std::string(what) + ": not valid JSON (" + e.what() + ")");
  }
}

std::string text_of(const Json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  MMX_CHECK(content.is_array(), Code::InvalidArgument,
            where + ": content must be a string or a list of {\"type\": \"text\", ...} parts");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string at = where + " content part " + std::to_string(i);
    MMX_CHECK(part.is_object(), Code::InvalidArgument, at + ": not an object");
    const std::string type = part.contains("type") && part["type"].is_string()
                                 ? part["type"].get<std::string>()
                                 : std::string("text");
    MMX_CHECK(type == "text", Code::InvalidArgument,
              at + ": type \"" + type + "\" is not supported (only text)");
    MMX_CHECK(part.contains("text") && part["text"].is_string(), Code::InvalidArgument,
              at + ": needs a string \"text\"");
    text += part["text"].get<std::string>();
  }
  return text;
}

Message parse_message(const Json& m, size_t index) {
  const std::string where = "message " + std::to_string(index);
  MMX_CHECK(m.is_object(), Code::InvalidArgument, where + ": not an object");
  MMX_CHECK(m.contains("role") && m["role"].is_string(), Code::InvalidArgument,
            where + ": needs a string \"role\"");
  MMX_CHECK(m.contains("content") && !m["content"].is_null(), Code::InvalidArgument,
            where + ": needs \"content\"");
  const std::string role = m["role"].get<std::string>();
  const Json& content = m["content"];
  Message msg;
  if (role == "system" || role == "user" || role == "assistant") {
    msg.role = role == "system" ? Role::System : role == "user" ? Role::User : Role::Assistant;
    msg.text = text_of(content, where);
  } else if (role == "tool") {
    msg.role = Role::Tool;
    MMX_CHECK(content.is_array(), Code::InvalidArgument,
              where + ": tool content must be a list of {\"name\": ..., \"text\": ...} results");
    for (size_t i = 0; i < content.size(); ++i) {
      const Json& r = content[i];
      MMX_CHECK(r.is_object() && r.contains("name") && r["name"].is_string() &&
                    r.contains("text") && r["text"].is_string(),
                Code::InvalidArgument,
                where + " content part " + std::to_string(i) +
                    ": a tool result needs string \"name\" and \"text\"");
      msg.results.emplace_back(r["name"].get<std::string>(), r["text"].get<std::string>());
    }
  } else {
    fail(Code::InvalidArgument,
         where + ": unknown role \"" + role + "\" (expected system, user, assistant or tool)");
  }
  return msg;
}

// Python's json.dumps(x, ensure_ascii=False): ", " and ": " separators, insertion order.
void dump_like_python(const Json& j, std::string& out) {
  if (j.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [key, value] : j.items()) {
      if (!first) out += ", ";
      first = false;
      out += Json(key).dump();
      out += ": ";
      dump_like_python(value, out);
    }
    out += '}';
  } else if (j.is_array()) {
    out += '[';
    for (size_t i = 0; i < j.size(); ++i) {
      if (i) out += ", ";
      dump_like_python(j[i], out);
    }
    out += ']';
  } else {
    out += j.dump();
  }
}

std::string render_text01(const std::vector<Message>& messages) {
  std::string out;
  for (const Message& m : messages) {
    MMX_CHECK(m.role != Role::Tool, Code::InvalidArgument,
              "the Text-01 chat format has no tool role (the M1 format has)");
    out += m.role == Role::System ? kSystemHeader
           : m.role == Role::User ? kUserHeader
                                  : kAssistantHeader;
    out += m.text;
    out += kEos;
  }
  return out;
}

std::string render_m1(const std::vector<Message>& messages, const Json& tools) {
  std::string out = kM1DocumentStart, system;
  for (const Message& m : messages)
    if (m.role == Role::System) system += m.text;
  if (!system.empty()) out += kSystemHeader + system + kEos;
  if (!tools.empty()) {
    out += kToolsHeader;
    for (const Json& tool : tools) {
      dump_like_python(tool, out);
      out += '\n';
    }
    out += kToolsFooter;
  }
  for (const Message& m : messages) {
    switch (m.role) {
      case Role::System:
        break;
      case Role::User:
        out += kUserHeader + m.text + kEos;
        break;
      case Role::Assistant:
        out += kAssistantHeader + m.text + kEos;
        break;
      case Role::Tool:
        out += kToolHeader;
        for (const auto& [name, text] : m.results)
          out += "tool name: " + name + "\ntool result: " + text + "\n\n";
        out += kEos;
        break;
    }
  }
  return out;
}

std::string read_text_file(const fs::path& path) {
  return fs::is_regular_file(path) ? read_tokenizer_file(path.string()) : std::string();
}

}  // namespace

ChatFormat ChatFormat::for_model(const std::string& model_dir, const std::string& model_type) {
  const fs::path dir(model_dir);
  // transformers 5 saves the template as chat_template.jinja beside tokenizer_config.json.
  std::string chat_template = read_text_file(dir / "chat_template.jinja");
  if (chat_template.empty())
    chat_template = read_tokenizer_config((dir / "tokenizer_config.json").string()).chat_template;
  ChatFormat f;
  if (!chat_template.empty())
    f.style = chat_template.find(kM1DocumentStart) != std::string::npos ? ChatStyle::M1
                                                                        : ChatStyle::Text01;
  else
    f.style = model_type == "minimax_m1" ? ChatStyle::M1 : ChatStyle::Text01;
  return f;
}

std::string ChatFormat::apply(const std::string& messages_json, bool add_generation_prompt) const {
  return apply(messages_json, add_generation_prompt, std::string());
}

std::string ChatFormat::apply(const std::string& messages_json, bool add_generation_prompt,
                              const std::string& tools_json) const {
  const Json messages = parse_argument(messages_json, "messages");
  MMX_CHECK(messages.is_array(), Code::InvalidArgument, "messages: must be a JSON list");
  std::vector<Message> parsed;
  for (size_t i = 0; i < messages.size(); ++i) parsed.push_back(parse_message(messages[i], i));

  Json tools = Json::array();
  if (!tools_json.empty()) {
    tools = parse_argument(tools_json, "tools");
    MMX_CHECK(tools.is_array() || tools.is_null(), Code::InvalidArgument,
              "tools: must be a JSON list of tool definitions");
    if (tools.is_null()) tools = Json::array();
  }
  MMX_CHECK(style == ChatStyle::M1 || tools.empty(), Code::InvalidArgument,
            "tools: the Text-01 chat format has no tools block (the M1 format has)");

  std::string out = style == ChatStyle::M1 ? render_m1(parsed, tools) : render_text01(parsed);
  if (add_generation_prompt) out += kAssistantHeader;
  return out;
}

}  // namespace mmx
