// Text: tokens, pieces and chat templates (llama.cpp's vocabulary API).

#include <algorithm>
#include <stdexcept>

#include "engine.h"
#include "llama.h"

namespace pyintro {

std::vector<std::string> builtin_templates() {
    std::vector<const char *> names(256);
    int32_t n = llama_chat_builtin_templates(names.data(), names.size());
    if (n > (int32_t) names.size()) {
        names.resize(n);
        n = llama_chat_builtin_templates(names.data(), names.size());
    }
    return std::vector<std::string>(names.begin(), names.begin() + std::max(0, n));
}

std::vector<int32_t> Engine::tokenize(const std::string & text, bool add_special, bool parse_special) const {
    check_ctx();
    std::vector<int32_t> out(text.size() + 8);
    int32_t n = llama_tokenize(vocab_, text.data(), (int32_t) text.size(), out.data(), (int32_t) out.size(),
                               add_special, parse_special);
    if (n < 0) {
        out.resize(-n);
        n = llama_tokenize(vocab_, text.data(), (int32_t) text.size(), out.data(), (int32_t) out.size(),
                           add_special, parse_special);
    }
    if (n < 0) throw std::runtime_error("llama.cpp failed to tokenize the text");
    out.resize(n);
    return out;
}

std::string Engine::detokenize(const std::vector<int32_t> & tokens, bool remove_special, bool unparse_special) const {
    check_ctx();
    for (int32_t t : tokens) {
        if (t < 0 || t >= n_vocab_) throw std::invalid_argument("token id " + std::to_string(t) + " is out of range");
    }
    std::string out(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab_, tokens.data(), (int32_t) tokens.size(), out.data(), (int32_t) out.size(),
                                 remove_special, unparse_special);
    if (n < 0) {
        out.resize(-n);
        n = llama_detokenize(vocab_, tokens.data(), (int32_t) tokens.size(), out.data(), (int32_t) out.size(),
                             remove_special, unparse_special);
    }
    if (n < 0) throw std::runtime_error("llama.cpp failed to detokenize");
    out.resize(n);
    return out;
}

std::string Engine::token_piece(int32_t token) const {
    check_ctx();
    if (token < 0 || token >= n_vocab_) throw std::invalid_argument("token id " + std::to_string(token) + " is out of range");
    char buf[256];
    int32_t n = llama_token_to_piece(vocab_, token, buf, sizeof(buf), 0, true);
    if (n < 0) return std::string();
    return std::string(buf, n);
}

std::string Engine::apply_chat_template(const std::vector<std::pair<std::string, std::string>> & messages,
                                        bool add_assistant, const std::string & tmpl_in) const {
    check_ctx();
    const char * tmpl = tmpl_in.empty() ? llama_model_chat_template(model_.get(), nullptr) : tmpl_in.c_str();
    if (tmpl == nullptr) throw std::invalid_argument("this model has no chat template; use chat_template='raw' or a template name");
    std::vector<llama_chat_message> msgs;
    size_t total = 0;
    for (const auto & m : messages) {
        msgs.push_back({m.first.c_str(), m.second.c_str()});
        total += m.first.size() + m.second.size();
    }
    std::vector<char> buf(2 * total + 1024);
    int32_t n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add_assistant, buf.data(), (int32_t) buf.size());
    if (n > (int32_t) buf.size()) {
        buf.resize(n);
        n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add_assistant, buf.data(), (int32_t) buf.size());
    }
    if (n < 0) throw std::invalid_argument("llama.cpp does not know this chat template; pass a Jinja template file or 'raw'");
    return std::string(buf.data(), n);
}

}  // namespace pyintro
