// Chat prompt formatting: turns a list of role/content messages into the prompt text a chat model
// was trained on. Supports ChatML (<|im_start|>role\n...<|im_end|>, used by SmolLM2 and Qwen2),
// the Llama 3 header format and a plain "role: content" fallback; the format is detected from the
// tokenizer.chat_template metadata rather than by running its Jinja code.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tq {

namespace gguf {
class File;
}

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

enum class ChatTemplateKind { kChatML, kLlama3, kPlain };

std::string_view chat_template_name(ChatTemplateKind kind);

struct ChatTemplate {
  ChatTemplateKind kind = ChatTemplateKind::kPlain;
  // Inserted as the first message when the conversation has no system message (SmolLM2's template
  // does this); empty means none.
  std::string default_system;
};

// Detects the format from a Jinja chat template string: "<|im_start|>" -> ChatML,
// "<|start_header_id|>" -> Llama 3, anything else (or empty) -> plain. A default system prompt
// written literally into a ChatML template is picked up too.
ChatTemplate detect_chat_template(std::string_view jinja_template);
// Reads tokenizer.chat_template from the file (plain when absent).
ChatTemplate detect_chat_template(const gguf::File& file);

// Formats the messages; with add_generation_prompt the text ends with the opening of an assistant
// turn so that the model continues as the assistant. BOS is not included (the tokenizer adds it).
std::string apply_chat_template(const ChatTemplate& chat_template,
                                std::span<const ChatMessage> messages, bool add_generation_prompt);

}  // namespace tq
