#include "log.h"

#include <deque>
#include <mutex>

#include "ggml.h"
#include "llama.h"

namespace pyintro {

namespace {

std::mutex log_mu;
std::deque<LogLine> log_lines;      // drained by Python
std::deque<std::string> log_errors; // last few warnings/errors, for exception messages
std::string log_pending;
int log_pending_level = GGML_LOG_LEVEL_INFO;
const size_t log_max_lines = 4096;
const size_t log_max_errors = 6;

void log_push_line(int level, std::string text) {
    if (level >= GGML_LOG_LEVEL_WARN) {
        log_errors.push_back(text);
        if (log_errors.size() > log_max_errors) log_errors.pop_front();
    }
    log_lines.push_back({level, std::move(text)});
    if (log_lines.size() > log_max_lines) log_lines.pop_front();
}

// Joins GGML_LOG_LEVEL_CONT pieces and splits on newlines.
void log_callback(enum ggml_log_level level, const char * text, void * /*user_data*/) {
    std::lock_guard<std::mutex> lock(log_mu);
    if (level != GGML_LOG_LEVEL_CONT) {
        if (!log_pending.empty()) log_push_line(log_pending_level, log_pending);
        log_pending.clear();
        log_pending_level = level;
    }
    log_pending += text;
    size_t nl;
    while ((nl = log_pending.find('\n')) != std::string::npos) {
        log_push_line(log_pending_level, log_pending.substr(0, nl));
        log_pending.erase(0, nl + 1);
    }
}

}  // namespace

void log_install() { llama_log_set(log_callback, nullptr); }

std::vector<LogLine> log_drain() {
    std::lock_guard<std::mutex> lock(log_mu);
    std::vector<LogLine> out(log_lines.begin(), log_lines.end());
    log_lines.clear();
    return out;
}

std::string log_last_errors() {
    std::lock_guard<std::mutex> lock(log_mu);
    std::string out;
    for (const auto & e : log_errors) {
        if (!out.empty()) out += "; ";
        out += e;
    }
    log_errors.clear();
    return out;
}

std::string with_reason(std::string what) {
    std::string why = log_last_errors();
    return why.empty() ? what : what + ": " + why;
}

}  // namespace pyintro
