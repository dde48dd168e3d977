// llama.cpp's log, buffered so that Python can drain it into `logging`. The callback may
// run on llama.cpp's threads, which never touch Python.
#pragma once

#include <string>
#include <vector>

namespace pyintro {

struct LogLine {
    int level;  // ggml_log_level
    std::string text;
};

// Makes llama.cpp log into the buffer (importing llama_cpp installs its own callback).
void log_install();
// The buffered lines, oldest first; empties the buffer.
std::vector<LogLine> log_drain();
// The last few warnings and errors joined by "; " (for exception messages); forgets them.
std::string log_last_errors();
// `what`, followed by ": " and log_last_errors() when there are any.
std::string with_reason(std::string what);

}  // namespace pyintro
