// Chat prompt formatting for the template families the runner supports (see chat_template.hpp).
// We recognise templates by their marker tokens instead of interpreting Jinja: the handful of
// formats real Llama-family GGUFs use are fixed strings around each message.
#include "turboquant/model/chat_template.hpp"

#include "turboquant/model/gguf.hpp"

namespace tq {

std::string_view chat_template_name(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kChatML:
      return "chatml";
    case ChatTemplateKind::kLlama3:
      return "llama3";
    case ChatTemplateKind::kPlain:
      return "plain";
  }
  return "plain";
}

ChatTemplate detect_chat_template(std::string_view jinja) {
  ChatTemplate t;
  if (jinja.find("<|im_start|>") != std::string_view::npos) {
    t.kind = ChatTemplateKind::kChatML;
    // SmolLM2-style: "{{ '<|im_start|>system\nDEFAULT<|im_end|>\n' }}" emitted when the first
    // message is not a system message. Take the literal text between the markers.
    constexpr std::string_view kOpen = "<|im_start|>system\n";
    constexpr std::string_view kClose = "<|im_end|>";
    const auto open = jinja.find(kOpen);
    if (open != std::string_view::npos) {
      const auto begin = open + kOpen.size();
      const auto close = jinja.find(kClose, begin);
      if (close != std::string_view::npos) {
        const std::string_view literal = jinja.substr(begin, close - begin);
        // Only a literal string counts; Jinja expressions mean the content is a variable.
        if (literal.find("{{") == std::string_view::npos &&
            literal.find("{%") == std::string_view::npos &&
            literal.find('\'') == std::string_view::npos && !literal.empty()) {
          t.default_system = std::string(literal);
        }
      }
    }
  } else if (jinja.find("<|start_header_id|>") != std::string_view::npos) {
    t.kind = ChatTemplateKind::kLlama3;
  }
  return t;
}

ChatTemplate detect_chat_template(const gguf::File& file) {
  return detect_chat_template(file.find_string("tokenizer.chat_template").value_or(""));
}

std::string apply_chat_template(const ChatTemplate& t, std::span<const ChatMessage> messages,
                                bool add_generation_prompt) {
  std::vector<ChatMessage> all;
  if (!t.default_system.empty() && (messages.empty() || messages.front().role != "system")) {
    all.push_back({"system", t.default_system});
  }
  all.insert(all.end(), messages.begin(), messages.end());
  std::string out;
  switch (t.kind) {
    case ChatTemplateKind::kChatML:
      for (const auto& m : all) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatTemplateKind::kLlama3:
      for (const auto& m : all) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatTemplateKind::kPlain:
      for (const auto& m : all) out += m.role + ": " + m.content + "\n";
      if (add_generation_prompt) out += "assistant:";
      break;
  }
  return out;
}

}  // namespace tq
