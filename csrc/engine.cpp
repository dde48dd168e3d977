#include "engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <stdexcept>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

namespace pyintro {

// ---------------------------------------------------------------------------
// Log buffer
// ---------------------------------------------------------------------------

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

bool eval_trampoline(ggml_tensor * t, bool ask, void * user_data) {
    return static_cast<Engine *>(user_data)->on_eval(t, ask);
}

// "<prefix><il>" -> il, else -1.
int32_t parse_layer_name(const char * name, const std::string & prefix) {
    if (std::strncmp(name, prefix.c_str(), prefix.size()) != 0) return -1;
    const char * p = name + prefix.size();
    if (*p < '0' || *p > '9') return -1;
    int32_t il = 0;
    for (; *p; ++p) {
        if (*p < '0' || *p > '9' || il > 100000) return -1;
        il = il * 10 + (*p - '0');
    }
    return il;
}

llama_batch & as_batch(void * p) { return *static_cast<llama_batch *>(p); }

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

bool supports_gpu_offload() { return llama_supports_gpu_offload(); }

std::vector<std::vector<std::string>> backend_devices() {
    std::vector<std::vector<std::string>> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        const char * type = "unknown";
        switch (ggml_backend_dev_type(dev)) {
            case GGML_BACKEND_DEVICE_TYPE_CPU:   type = "cpu"; break;
            case GGML_BACKEND_DEVICE_TYPE_GPU:   type = "gpu"; break;
            case GGML_BACKEND_DEVICE_TYPE_IGPU:  type = "igpu"; break;
            case GGML_BACKEND_DEVICE_TYPE_ACCEL: type = "accel"; break;
            default: break;
        }
        out.push_back({ggml_backend_dev_name(dev), ggml_backend_dev_description(dev), type});
    }
    return out;
}

// ---------------------------------------------------------------------------
// Engine: lifetime and description
// ---------------------------------------------------------------------------

Engine::Engine(const EngineParams & params) {
    if (params.n_seq_max < 1 || params.n_seq_max > llama_max_parallel_sequences()) {
        throw std::invalid_argument("n_seq_max must be between 1 and " + std::to_string(llama_max_parallel_sequences()));
    }
    if (params.n_ctx < 8 || params.n_batch < 1) {
        throw std::invalid_argument("n_ctx must be at least 8 and n_batch at least 1");
    }
    // llama.cpp clamps n_batch to n_ctx and asserts n_seq_max <= n_batch (output buffer,
    // ref: llama-context.cpp output_reserve); refuse here instead of aborting there.
    const uint32_t n_batch = std::min(params.n_batch, params.n_ctx);
    if (params.n_seq_max > n_batch) {
        throw std::invalid_argument("n_seq_max (" + std::to_string(params.n_seq_max) + ") must not exceed n_batch and n_ctx (" +
                                    std::to_string(n_batch) + "); lower n_seq_max or raise n_ctx");
    }
    log_last_errors();  // forget errors from earlier calls

    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = params.n_gpu_layers;
    model_ = llama_model_load_from_file(params.path.c_str(), mparams);
    if (model_ == nullptr) {
        std::string why = log_last_errors();
        throw std::runtime_error("llama.cpp could not load the model '" + params.path + "'" +
                                 (why.empty() ? std::string() : ": " + why));
    }

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = params.n_ctx;
    cparams.n_batch = n_batch;
    cparams.n_ubatch = n_batch;  // one ubatch per decode: rows stay in batch order
    cparams.n_seq_max = params.n_seq_max;
    cparams.n_threads = params.n_threads;
    cparams.n_threads_batch = params.n_threads;
    cparams.kv_unified = true;  // sequences share the KV cells of a common prefix
    cparams.no_perf = true;
    cparams.flash_attn_type = params.flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if (params.eval_callback) {
        cparams.cb_eval = eval_trampoline;
        cparams.cb_eval_user_data = this;
    }
    ctx_ = llama_init_from_model(model_, cparams);
    if (ctx_ == nullptr) {
        std::string why = log_last_errors();
        llama_model_free(model_);
        model_ = nullptr;
        throw std::runtime_error("llama.cpp could not create a context for '" + params.path + "'" +
                                 (why.empty() ? std::string() : ": " + why));
    }

    // Encoder, embedding and diffusion models keep no KV memory: their logits are
    // zeros or ignore earlier calls, and seq_rm/seq_cp do nothing. Refuse them.
    if (llama_get_memory(ctx_) == nullptr) {
        std::string arch_name = arch();
        close();
        throw std::invalid_argument("architecture '" + arch_name + "' keeps no KV cache (an encoder, embedding or "
                                    "diffusion model); pyintro needs a causal decoder: '" + params.path + "'");
    }

    vocab_ = llama_model_get_vocab(model_);
    n_layer_ = llama_model_n_layer(model_);
    n_embd_ = llama_model_n_embd(model_);
    n_vocab_ = llama_vocab_n_tokens(vocab_);
    n_batch_ = llama_n_batch(ctx_);
    layer_prefix_ = params.layer_prefix;
    batch_ = new llama_batch(llama_batch_init((int32_t) n_batch_, 0, 1));

    layer_specs_.resize(n_layer_);
    layer_capture_.assign(n_layer_, -1);
    layer_wanted_.assign(n_layer_, 0);
    hits_chunk_.assign(n_layer_, 0);
    hits_total_.assign(n_layer_, 0);
}

Engine::~Engine() { close(); }

void Engine::close() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (batch_ != nullptr) {
        llama_batch_free(as_batch(batch_));
        delete static_cast<llama_batch *>(batch_);
        batch_ = nullptr;
    }
    if (ctx_ != nullptr) {
        llama_free(ctx_);
        ctx_ = nullptr;
    }
    if (model_ != nullptr) {
        llama_model_free(model_);
        model_ = nullptr;
    }
}

void Engine::check_ctx() const {
    if (ctx_ == nullptr) throw std::runtime_error("this model has been closed; load it again");
}

uint32_t Engine::n_ctx() const { check_ctx(); return llama_n_ctx(ctx_); }
uint32_t Engine::n_seq_max() const { check_ctx(); return llama_n_seq_max(ctx_); }

std::string Engine::arch() const {
    check_ctx();
    char buf[256];
    int32_t n = llama_model_meta_val_str(model_, "general.architecture", buf, sizeof(buf));
    return n < 0 ? std::string() : std::string(buf);
}

bool Engine::recurrent() const {
    check_ctx();
    return llama_model_is_recurrent(model_) || llama_model_is_hybrid(model_);
}

std::string Engine::desc() const {
    check_ctx();
    char buf[256];
    llama_model_desc(model_, buf, sizeof(buf));
    return buf;
}

std::string Engine::chat_template() const {
    check_ctx();
    const char * tmpl = llama_model_chat_template(model_, nullptr);
    return tmpl == nullptr ? std::string() : std::string(tmpl);
}

std::vector<std::pair<std::string, std::string>> Engine::metadata() const {
    check_ctx();
    std::vector<std::pair<std::string, std::string>> out;
    std::vector<char> key(512), val(4096);
    for (int32_t i = 0; i < llama_model_meta_count(model_); ++i) {
        if (llama_model_meta_key_by_index(model_, i, key.data(), key.size()) < 0) continue;
        int32_t n = llama_model_meta_val_str_by_index(model_, i, val.data(), val.size());
        if (n < 0) continue;
        if ((size_t) n >= val.size()) {
            val.resize(n + 1);
            llama_model_meta_val_str_by_index(model_, i, val.data(), val.size());
        }
        out.emplace_back(key.data(), val.data());
    }
    return out;
}

bool Engine::is_eog(int32_t token) const {
    check_ctx();
    return llama_vocab_is_eog(vocab_, token);
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

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
                                        bool add_assistant) const {
    check_ctx();
    const char * tmpl = llama_model_chat_template(model_, nullptr);
    if (tmpl == nullptr) throw std::invalid_argument("this model has no chat template; pass token ids or raw text instead");
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
    if (n < 0) throw std::invalid_argument("llama.cpp does not support this model's chat template; pass a formatted prompt instead");
    return std::string(buf.data(), n);
}

// ---------------------------------------------------------------------------
// KV memory
// ---------------------------------------------------------------------------

void Engine::memory_clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    llama_memory_clear(llama_get_memory(ctx_), true);
}

bool Engine::seq_rm(int32_t seq, int32_t p0, int32_t p1) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    // llama.cpp asserts on seq < -1 (llama-kv-cache.cpp seq_rm); refuse it here.
    if (seq < -1 || seq >= (int32_t) llama_n_seq_max(ctx_)) throw std::invalid_argument("sequence id out of range");
    return llama_memory_seq_rm(llama_get_memory(ctx_), seq, p0, p1);
}

void Engine::seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    int32_t n = (int32_t) llama_n_seq_max(ctx_);
    if (src < 0 || src >= n || dst < 0 || dst >= n) throw std::invalid_argument("sequence id out of range");
    llama_memory_seq_cp(llama_get_memory(ctx_), src, dst, p0, p1);
}

int32_t Engine::seq_pos_max(int32_t seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    if (seq < 0 || seq >= (int32_t) llama_n_seq_max(ctx_)) throw std::invalid_argument("sequence id out of range");
    return llama_memory_seq_pos_max(llama_get_memory(ctx_), seq);
}

// ---------------------------------------------------------------------------
// Decode
// ---------------------------------------------------------------------------

void Engine::validate(const DecodeRequest & req) const {
    check_ctx();
    const size_t n_rows = req.tokens.size();
    if (n_rows == 0) throw std::invalid_argument("nothing to decode: the prompt is empty");
    if (req.pos.size() != n_rows || req.seq.size() != n_rows || req.output.size() != n_rows) {
        throw std::invalid_argument("tokens, positions, sequence ids and output flags must have the same length");
    }
    const int32_t n_ctx = (int32_t) llama_n_ctx(ctx_);
    const int32_t n_seq = (int32_t) llama_n_seq_max(ctx_);
    for (size_t i = 0; i < n_rows; ++i) {
        if (req.tokens[i] < 0 || req.tokens[i] >= n_vocab_) {
            throw std::invalid_argument("token id " + std::to_string(req.tokens[i]) + " is outside the vocabulary (" +
                                        std::to_string(n_vocab_) + ")");
        }
        if (req.pos[i] < 0 || req.pos[i] >= n_ctx) {
            throw std::invalid_argument("position " + std::to_string(req.pos[i]) + " does not fit the context of " +
                                        std::to_string(n_ctx) + " tokens; load the model with a larger n_ctx");
        }
        if (req.seq[i] < 0 || req.seq[i] >= n_seq) {
            throw std::invalid_argument("sequence id " + std::to_string(req.seq[i]) + " is outside 0.." +
                                        std::to_string(n_seq - 1) + "; load the model with a larger n_seq_max");
        }
    }
    for (const auto & spec : req.inject) {
        if (spec.il < 0 || spec.il >= n_layer_) {
            throw std::invalid_argument("layer " + std::to_string(spec.il) + " is out of range: this model has layers 0.." +
                                        std::to_string(n_layer_ - 1));
        }
        if ((int32_t) spec.vec.size() != n_embd_) {
            throw std::invalid_argument("vector has " + std::to_string(spec.vec.size()) + " entries, the model's n_embd is " +
                                        std::to_string(n_embd_));
        }
        if (spec.scale.size() != n_rows) throw std::invalid_argument("injection scale must have one entry per row");
        for (float v : spec.vec) {
            if (!std::isfinite(v)) throw std::invalid_argument("vector contains NaN or Inf");
        }
        for (float s : spec.scale) {
            if (!std::isfinite(s)) throw std::invalid_argument("strength is NaN or Inf");
        }
    }
    bool capture_last = false;
    for (size_t i = 0; i < req.capture_layers.size(); ++i) {
        int32_t il = req.capture_layers[i];
        if (il < 0 || il >= n_layer_) {
            throw std::invalid_argument("capture layer " + std::to_string(il) + " is out of range: this model has layers 0.." +
                                        std::to_string(n_layer_ - 1));
        }
        for (size_t j = 0; j < i; ++j) {
            if (req.capture_layers[j] == il) throw std::invalid_argument("capture layers must not repeat");
        }
        capture_last = capture_last || il == n_layer_ - 1;
    }
    for (size_t i = 0; i < req.capture_rows.size(); ++i) {
        int32_t r = req.capture_rows[i];
        if (r < 0 || (size_t) r >= n_rows || (i > 0 && r <= req.capture_rows[i - 1])) {
            throw std::invalid_argument("capture rows must be increasing row indices of the batch");
        }
        // llama.cpp keeps only output rows in the last layer (inp_out_ids).
        if (capture_last && !req.output[r]) {
            throw std::invalid_argument("capturing the last layer needs every capture row marked as an output");
        }
    }
    for (int32_t id : req.gather_ids) {
        if (id < 0 || id >= n_vocab_) throw std::invalid_argument("vocab id " + std::to_string(id) + " is out of range");
    }
}

void Engine::decode(const DecodeRequest & req, const DecodeOutputs & out) {
    std::lock_guard<std::mutex> lock(mutex_);
    validate(req);
    const int32_t n_rows = (int32_t) req.tokens.size();

    for (int32_t il = 0; il < n_layer_; ++il) {
        layer_specs_[il].clear();
        layer_capture_[il] = -1;
        layer_wanted_[il] = 0;
        hits_total_[il] = 0;
    }
    for (size_t k = 0; k < req.inject.size(); ++k) {
        const InjectSpec & spec = req.inject[k];
        bool any = false;
        for (float s : spec.scale) any = any || s != 0.0f;
        if (!any) continue;  // rows with scale 0 are never touched
        layer_specs_[spec.il].push_back((int32_t) k);
        layer_wanted_[spec.il] = 1;
    }
    for (size_t slot = 0; slot < req.capture_layers.size(); ++slot) {
        layer_capture_[req.capture_layers[slot]] = (int32_t) slot;
        if (!req.capture_rows.empty()) layer_wanted_[req.capture_layers[slot]] = 1;
    }

    cur_req_ = &req;
    cur_out_ = &out;
    int32_t out_begin = 0;
    for (int32_t begin = 0; begin < n_rows; begin += (int32_t) n_batch_) {
        int32_t end = std::min(n_rows, begin + (int32_t) n_batch_);
        decode_chunk(req, out, begin, end, out_begin);
        for (int32_t i = begin; i < end; ++i) out_begin += req.output[i] ? 1 : 0;
    }
    cur_req_ = nullptr;
    cur_out_ = nullptr;
}

void Engine::decode_chunk(const DecodeRequest & req, const DecodeOutputs & out, int32_t begin, int32_t end,
                          int32_t out_begin) {
    llama_batch & batch = as_batch(batch_);
    batch.n_tokens = end - begin;
    cur_out_rows_.clear();
    for (int32_t i = begin; i < end; ++i) {
        int32_t j = i - begin;
        batch.token[j] = req.tokens[i];
        batch.pos[j] = req.pos[i];
        batch.n_seq_id[j] = 1;
        batch.seq_id[j][0] = req.seq[i];
        batch.logits[j] = req.output[i];
        if (req.output[i]) cur_out_rows_.push_back(j);
    }
    cur_begin_ = begin;
    cur_end_ = end;
    cb_error_.clear();
    std::fill(hits_chunk_.begin(), hits_chunk_.end(), 0);

    int32_t rc = llama_decode(ctx_, batch);
    if (rc != 0) {
        std::string why = log_last_errors();
        std::string what = rc == 1 ? "no room left in the KV cache (n_ctx is too small for this batch; load the model with a larger n_ctx)"
                                   : "llama_decode failed with code " + std::to_string(rc);
        throw std::runtime_error(what + (why.empty() ? std::string() : ": " + why));
    }
    if (!cb_error_.empty()) throw std::runtime_error(cb_error_);
    for (int32_t il = 0; il < n_layer_; ++il) {
        if (!layer_wanted_[il]) continue;
        if (hits_chunk_[il] == 0) {
            throw std::runtime_error("layer " + std::to_string(il) + ": no tensor named " + layer_prefix_ + std::to_string(il) +
                                     " in this model's graph (architecture '" + arch() +
                                     "' does not name its layer outputs); pyintro cannot inject or capture here");
        }
        if (hits_chunk_[il] > 1) {
            throw std::runtime_error("layer " + std::to_string(il) + " was computed " + std::to_string(hits_chunk_[il]) +
                                     " times in one decode (the batch was split); use a smaller batch");
        }
        hits_total_[il] += hits_chunk_[il];
    }

    if (out.logits == nullptr) return;
    const bool gather = !req.gather_ids.empty();
    const size_t n_cols = gather ? req.gather_ids.size() : (size_t) n_vocab_;
    int32_t k = out_begin;
    for (int32_t j : cur_out_rows_) {
        const float * row = llama_get_logits_ith(ctx_, j);
        if (row == nullptr) throw std::runtime_error("llama.cpp returned no logits for row " + std::to_string(begin + j));
        float * dst = out.logits + (size_t) k * n_cols;
        if (gather) {
            for (size_t c = 0; c < n_cols; ++c) dst[c] = row[req.gather_ids[c]];
        } else {
            std::memcpy(dst, row, n_cols * sizeof(float));
        }
        // Never hand back NaN/Inf: a too-strong injection (or a broken model) says so here.
        for (size_t c = 0; c < n_cols; ++c) {
            if (!std::isfinite(dst[c])) {
                throw std::runtime_error("row " + std::to_string(begin + j) + " produced non-finite logits (NaN or Inf); "
                                         "lower the strength (or check the model file)");
            }
        }
        ++k;
    }
}

bool Engine::on_eval(ggml_tensor * t, bool ask) {
    int32_t il = parse_layer_name(t->name, layer_prefix_);
    if (il < 0 || il >= n_layer_ || cur_req_ == nullptr) return ask ? false : true;
    if (ask) return layer_wanted_[il] != 0;
    hits_chunk_[il] += 1;
    if (layer_wanted_[il] && cb_error_.empty()) apply_layer(t, il);
    return true;  // returning false would stop the graph computation
}

// Past this magnitude x*x overflows float32 in the next RMS/layer norm, which then
// zeroes the row (or makes it NaN): the logits would be silently meaningless.
static const float max_residual = 1e19f;

// Adds the injections for layer il to t, then copies out captured rows.
// Sets cb_error_ if an injected value leaves [-max_residual, max_residual].
// t is [n_embd, n_rows_t]: every row of the chunk, or in the last layer only
// the output rows (llama.cpp drops the others there, see build_inp_out_ids).
void Engine::apply_layer(ggml_tensor * t, int32_t il) {
    const DecodeRequest & req = *cur_req_;
    const int32_t chunk_n = cur_end_ - cur_begin_;
    const int32_t n_rows_t = (int32_t) t->ne[1];
    bool out_only;
    if (n_rows_t == chunk_n) {
        out_only = false;
    } else if (n_rows_t == (int32_t) cur_out_rows_.size()) {
        out_only = true;
    } else {
        cb_error_ = layer_prefix_ + std::to_string(il) + " has " + std::to_string(n_rows_t) + " rows, expected " +
                    std::to_string(chunk_n);
        return;
    }
    if (t->type != GGML_TYPE_F32 || t->ne[0] != n_embd_ || t->nb[0] != sizeof(float)) {
        cb_error_ = layer_prefix_ + std::to_string(il) + " is not an F32 [n_embd, rows] tensor";
        return;
    }
    const bool host = t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer);
    const size_t row_bytes = (size_t) n_embd_ * sizeof(float);
    scratch_.resize(n_embd_);

    // The tensor row r holds chunk row chunk_row(r).
    auto chunk_row = [&](int32_t r) { return out_only ? cur_out_rows_[r] : r; };

    for (int32_t k : layer_specs_[il]) {
        const InjectSpec & spec = req.inject[k];
        const float * v = spec.vec.data();
        for (int32_t r = 0; r < n_rows_t; ++r) {
            float s = spec.scale[cur_begin_ + chunk_row(r)];
            if (s == 0.0f) continue;
            float * x;
            if (host) {
                x = (float *) ((char *) t->data + (size_t) r * t->nb[1]);
            } else {
                ggml_backend_tensor_get(t, scratch_.data(), (size_t) r * t->nb[1], row_bytes);
                x = scratch_.data();
            }
            bool overflow = false;
            for (int32_t e = 0; e < n_embd_; ++e) {
                x[e] += s * v[e];
                overflow = overflow || !(std::fabs(x[e]) <= max_residual);
            }
            if (!host) ggml_backend_tensor_set(t, scratch_.data(), (size_t) r * t->nb[1], row_bytes);
            if (overflow && cb_error_.empty()) {
                cb_error_ = "injection at layer " + std::to_string(il) + " overflowed the residual stream of row " +
                            std::to_string(cur_begin_ + chunk_row(r)) + " (|value| > 1e19, or NaN/Inf); lower the strength";
            }
        }
    }

    int32_t slot = layer_capture_[il];
    if (slot < 0 || cur_out_->capture == nullptr) return;
    const auto & rows = req.capture_rows;
    auto first = std::lower_bound(rows.begin(), rows.end(), cur_begin_);
    for (auto it = first; it != rows.end() && *it < cur_end_; ++it) {
        int32_t j = *it - cur_begin_;  // chunk row
        int32_t r = j;
        if (out_only) {
            auto pos = std::lower_bound(cur_out_rows_.begin(), cur_out_rows_.end(), j);
            r = (int32_t) (pos - cur_out_rows_.begin());  // validate() made every capture row an output here
        }
        size_t ci = (size_t) (it - rows.begin());
        float * dst = cur_out_->capture + ((size_t) slot * rows.size() + ci) * n_embd_;
        if (host) {
            std::memcpy(dst, (char *) t->data + (size_t) r * t->nb[1], row_bytes);
        } else {
            ggml_backend_tensor_get(t, dst, (size_t) r * t->nb[1], row_bytes);
        }
    }
}

}  // namespace pyintro
