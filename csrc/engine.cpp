#include "engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"
#include "log.h"

namespace pyintro {

void ModelFree::operator()(llama_model * m) const { llama_model_free(m); }
void ContextFree::operator()(llama_context * c) const { llama_free(c); }
void BatchFree::operator()(llama_batch * b) const {
    llama_batch_free(*b);
    delete b;
}

bool supports_gpu_offload() { return llama_supports_gpu_offload(); }

std::string system_info() { return llama_print_system_info(); }

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

namespace {

std::string with_reason(std::string what) {
    std::string why = log_last_errors();
    return why.empty() ? what : what + ": " + why;
}

// out = (max, log-sum-exp, argmax) of row[0 .. n); the sum of exp(x - max) runs in double.
// False if the row holds NaN or Inf.
bool row_stats(const float * row, int32_t n, double * out) {
    int32_t best = 0;
    for (int32_t c = 0; c < n; ++c) {
        if (!std::isfinite(row[c])) return false;
        if (row[c] > row[best]) best = c;
    }
    const double m = row[best];
    double sum = 0.0;
    for (int32_t c = 0; c < n; ++c) sum += std::exp((double) row[c] - m);
    out[0] = m;
    out[1] = m + std::log(sum);
    out[2] = best;
    return true;
}

// Rows of one llama_decode call holding n real rows of which o are outputs, once padded:
// first to a multiple of q outputs, then to a multiple of q rows.
int32_t padded_rows(int32_t n, int32_t o, int32_t q) {
    const int32_t po = (q - o % q) % q;
    return n + po + (q - (n + po) % q) % q;
}

}  // namespace

// ---------------------------------------------------------------------------
// Lifetime and description
// ---------------------------------------------------------------------------

Engine::Engine(const EngineParams & params) : hook_(0, 0, params.layer_prefix) {
    const uint32_t n_seq_llama = params.n_seq_max + 1;  // + the padding rows' sequence
    if (params.n_seq_max < 1 || n_seq_llama > llama_max_parallel_sequences()) {
        throw std::invalid_argument("n_seq_max must be between 1 and " + std::to_string(llama_max_parallel_sequences() - 1));
    }
    if (params.n_ctx < 8 || params.n_batch < 1 || params.row_quantum < 1) {
        throw std::invalid_argument("n_ctx must be at least 8, n_batch and row_quantum at least 1");
    }
    const uint32_t n_batch = std::min(params.n_batch, params.n_ctx);
    if (params.row_quantum > n_batch) {
        throw std::invalid_argument("row_quantum (" + std::to_string(params.row_quantum) + ") must not exceed n_batch (" +
                                    std::to_string(n_batch) + ")");
    }
    log_last_errors();  // forget errors from earlier calls

    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = params.n_gpu_layers;
    path_ = params.path;
    model_.reset(llama_model_load_from_file(params.path.c_str(), mparams));
    if (!model_) throw std::runtime_error(with_reason("llama.cpp could not load the model '" + params.path + "'"));
    // An encoder-decoder (T5) would abort the process at its first decode
    // ("llama_encode must be called first"): refuse it while we still can.
    if (llama_model_has_encoder(model_.get())) {
        std::string name = arch();
        model_.reset();
        throw std::invalid_argument("architecture '" + name + "' is an encoder-decoder model; pyintro needs a "
                                    "decoder-only model (llama, qwen, gemma, ...): '" + params.path + "'");
    }

    vocab_ = llama_model_get_vocab(model_.get());
    n_layer_ = llama_model_n_layer(model_.get());
    n_embd_ = llama_model_n_embd(model_.get());
    n_vocab_ = llama_vocab_n_tokens(vocab_);
    hook_ = Hook(n_layer_, n_embd_, params.layer_prefix);

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = params.n_ctx;
    cparams.n_batch = n_batch;
    cparams.n_ubatch = n_batch;  // one ubatch per llama_decode call: rows stay in call order
    cparams.n_seq_max = n_seq_llama;
    // The logits buffer holds max(outputs, n_seq_max) rows (ref: llama-context.cpp output_reserve).
    cparams.n_outputs_max = std::max(n_batch, n_seq_llama);
    cparams.n_threads = params.n_threads;
    cparams.n_threads_batch = params.n_threads;
    cparams.kv_unified = true;  // sequences share the KV cells of a common prefix
    cparams.swa_full = true;    // a sliding-window cache can then go back to a shared prefix
    cparams.no_perf = true;
    // With no layer offloaded, keep every op on the CPU: llama.cpp otherwise sends matrix
    // products of 32+ rows to a GPU, so calls of 56 and of 8 rows would take other kernels.
    cparams.op_offload = params.n_gpu_layers != 0;
    cparams.flash_attn_type = params.flash_attn ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if (params.eval_callback) {
        cparams.cb_eval = Hook::eval;
        cparams.cb_eval_user_data = &hook_;
    }
    ctx_.reset(llama_init_from_model(model_.get(), cparams));
    if (!ctx_) {
        model_.reset();
        throw std::runtime_error(with_reason("llama.cpp could not create a context for '" + params.path + "'"));
    }
    // Encoder, embedding and diffusion models keep no KV memory: their logits are zeros or
    // ignore earlier calls, and seq_rm/seq_cp do nothing. Refuse them.
    if (llama_get_memory(ctx_.get()) == nullptr) {
        std::string name = arch();
        close();
        throw std::invalid_argument("architecture '" + name + "' keeps no KV cache (an encoder, embedding or "
                                    "diffusion model); pyintro needs a causal decoder: '" + params.path + "'");
    }
    n_batch_ = llama_n_batch(ctx_.get());
    quantum_ = params.row_quantum;
    flash_attn_ = params.flash_attn;
    scratch_seq_ = (int32_t) n_seq_llama - 1;
    batch_.reset(new llama_batch(llama_batch_init((int32_t) n_batch_, 0, 1)));
}

void Engine::close() {
    std::lock_guard<std::mutex> lock(mutex_);
    batch_.reset();
    ctx_.reset();
    model_.reset();
}

void Engine::check_ctx() const {
    if (!ctx_) throw std::runtime_error("this model has been closed; load it again");
}

uint32_t Engine::n_ctx() const { check_ctx(); return llama_n_ctx(ctx_.get()); }
uint32_t Engine::n_seq_max() const { check_ctx(); return (uint32_t) scratch_seq_; }

std::string Engine::arch() const {
    if (!model_) throw std::runtime_error("this model has been closed; load it again");
    char buf[256];
    int32_t n = llama_model_meta_val_str(model_.get(), "general.architecture", buf, sizeof(buf));
    return n < 0 ? std::string() : std::string(buf);
}

bool Engine::recurrent() const {
    check_ctx();
    return llama_model_is_recurrent(model_.get()) || llama_model_is_hybrid(model_.get());
}

std::string Engine::desc() const {
    check_ctx();
    char buf[256];
    llama_model_desc(model_.get(), buf, sizeof(buf));
    return buf;
}

std::string Engine::chat_template() const {
    check_ctx();
    const char * tmpl = llama_model_chat_template(model_.get(), nullptr);
    return tmpl == nullptr ? std::string() : std::string(tmpl);
}

std::vector<std::pair<std::string, std::string>> Engine::metadata() const {
    check_ctx();
    std::vector<std::pair<std::string, std::string>> out;
    std::vector<char> key(512), val(4096);
    for (int32_t i = 0; i < llama_model_meta_count(model_.get()); ++i) {
        if (llama_model_meta_key_by_index(model_.get(), i, key.data(), key.size()) < 0) continue;
        int32_t n = llama_model_meta_val_str_by_index(model_.get(), i, val.data(), val.size());
        if (n < 0) continue;
        if ((size_t) n >= val.size()) {
            val.resize(n + 1);
            llama_model_meta_val_str_by_index(model_.get(), i, val.data(), val.size());
        }
        out.emplace_back(key.data(), val.data());
    }
    return out;
}

bool Engine::is_eog(int32_t token) const {
    check_ctx();
    return llama_vocab_is_eog(vocab_, token);
}

int32_t Engine::bos() const {
    check_ctx();
    return llama_vocab_bos(vocab_);
}

int32_t Engine::eos() const {
    check_ctx();
    return llama_vocab_eos(vocab_);
}

bool Engine::add_bos() const {
    check_ctx();
    return llama_vocab_get_add_bos(vocab_);
}

// ---------------------------------------------------------------------------
// KV memory
// ---------------------------------------------------------------------------

void Engine::memory_clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    llama_memory_clear(llama_get_memory(ctx_.get()), true);
}

bool Engine::seq_rm(int32_t seq, int32_t p0, int32_t p1) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    // llama.cpp asserts on seq < -1 (llama-kv-cache.cpp seq_rm); refuse it here.
    if (seq < -1 || seq >= (int32_t) n_seq_max()) throw std::invalid_argument("sequence id out of range");
    return llama_memory_seq_rm(llama_get_memory(ctx_.get()), seq, p0, p1);
}

void Engine::seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    int32_t n = (int32_t) n_seq_max();
    if (src < 0 || src >= n || dst < 0 || dst >= n) throw std::invalid_argument("sequence id out of range");
    llama_memory_seq_cp(llama_get_memory(ctx_.get()), src, dst, p0, p1);
}

int32_t Engine::seq_pos_max(int32_t seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    if (seq < 0 || seq >= (int32_t) n_seq_max()) throw std::invalid_argument("sequence id out of range");
    return llama_memory_seq_pos_max(llama_get_memory(ctx_.get()), seq);
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
    const int32_t n_ctx = (int32_t) llama_n_ctx(ctx_.get());
    const int32_t n_seq = (int32_t) n_seq_max();
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
    if (req.fast_head && req.gather_ids != head_.ids) {
        throw std::invalid_argument("fast_head needs gather_ids equal to the head's ids (set_head)");
    }
}

// The end of the llama_decode call that starts at row `begin`: as many rows as fit n_batch
// once padded (padded_rows), at least one.
int32_t Engine::chunk_end(const DecodeRequest & req, int32_t begin) const {
    const int32_t n_rows = (int32_t) req.tokens.size();
    const int32_t q = (int32_t) quantum_;
    int32_t end = begin, n_out = 0;
    while (end < n_rows) {
        const int32_t o = n_out + (req.output[end] ? 1 : 0);
        if (end > begin && padded_rows(end - begin + 1, o, q) > (int32_t) n_batch_) break;
        n_out = o;
        ++end;
    }
    return end;
}

void Engine::decode(const DecodeRequest & req, const DecodeOutputs & out) {
    std::lock_guard<std::mutex> lock(mutex_);
    validate(req);
    HookPlan plan;
    plan.inject = &req.inject;
    plan.capture_layers = &req.capture_layers;
    plan.capture_rows = &req.capture_rows;
    plan.capture = out.capture;
    plan.stop_at_norm = req.fast_head;
    // The hook borrows the request: disarm it on every way out.
    struct Disarm {
        Hook & hook;
        ~Disarm() { hook.disarm(); }
    } disarm{hook_};
    hook_.arm(plan);
    last_calls_ = 0;
    const int32_t n_rows = (int32_t) req.tokens.size();
    int32_t out_begin = 0;
    for (int32_t begin = 0; begin < n_rows;) {
        const int32_t end = chunk_end(req, begin);
        decode_chunk(req, out, begin, end, out_begin);
        for (int32_t i = begin; i < end; ++i) out_begin += req.output[i] ? 1 : 0;
        begin = end;
    }
}

// One llama_decode call: request rows [begin, end), then padding rows in the scratch
// sequence (token 0 at positions 0, 1, ...; the first ones outputs), removed afterwards.
void Engine::decode_chunk(const DecodeRequest & req, const DecodeOutputs & out, int32_t begin, int32_t end,
                          int32_t out_begin) {
    llama_batch & batch = *batch_;
    const int32_t n_real = end - begin;
    HookChunk chunk;
    chunk.begin = begin;
    chunk.n_real = n_real;
    for (int32_t i = begin; i < end; ++i) {
        int32_t j = i - begin;
        batch.token[j] = req.tokens[i];
        batch.pos[j] = req.pos[i];
        batch.n_seq_id[j] = 1;
        batch.seq_id[j][0] = req.seq[i];
        batch.logits[j] = req.output[i];
        if (req.output[i]) chunk.out_rows.push_back(j);
    }
    const int32_t q = (int32_t) quantum_;
    const int32_t n_out_real = (int32_t) chunk.out_rows.size();
    const int32_t n_total = padded_rows(n_real, n_out_real, q);
    const int32_t n_pad_out = (q - n_out_real % q) % q;
    for (int32_t j = n_real; j < n_total; ++j) {
        const int32_t k = j - n_real;
        batch.token[j] = 0;
        batch.pos[j] = k;
        batch.n_seq_id[j] = 1;
        batch.seq_id[j][0] = scratch_seq_;
        batch.logits[j] = k < n_pad_out;
        if (k < n_pad_out) chunk.out_rows.push_back(j);
    }
    batch.n_tokens = n_total;
    chunk.n_rows = n_total;
    hook_.begin_chunk(chunk);

    llama_memory_t mem = llama_get_memory(ctx_.get());
    const int32_t rc = llama_decode(ctx_.get(), batch);
    ++last_calls_;
    if (n_total > n_real) llama_memory_seq_rm(mem, scratch_seq_, -1, -1);
    if (rc != 0) {
        std::string what = rc == 1 ? "no room left in the KV cache (load the model with a larger n_ctx, or use fewer points per call)"
                                   : "llama_decode failed with code " + std::to_string(rc);
        throw std::runtime_error(with_reason(what));
    }
    std::string err = hook_.end_chunk(arch());
    if (!err.empty()) throw std::runtime_error(err);

    if (out.logits == nullptr && out.stats == nullptr) return;
    if (req.fast_head) {
        float * dst = out.logits + (size_t) out_begin * head_.ids.size();
        head_logits(n_out_real, dst);  // the real outputs come first in the call
        for (size_t c = 0; c < (size_t) n_out_real * head_.ids.size(); ++c) {
            if (!std::isfinite(dst[c])) {
                throw std::runtime_error("a row produced non-finite logits (NaN or Inf); lower the strength");
            }
        }
        return;
    }
    const bool gather = !req.gather_ids.empty();
    const size_t n_cols = gather ? req.gather_ids.size() : (size_t) n_vocab_;
    int32_t k = out_begin;
    for (int32_t i = 0; i < n_out_real; ++i, ++k) {
        const int32_t j = chunk.out_rows[i];
        const float * row = llama_get_logits_ith(ctx_.get(), j);
        if (row == nullptr) throw std::runtime_error("llama.cpp returned no logits for row " + std::to_string(begin + j));
        // Never hand back NaN/Inf: a too-strong injection (or a broken model) says so here.
        auto bad = [&]() {
            return std::runtime_error("row " + std::to_string(begin + j) + " produced non-finite logits (NaN or Inf); "
                                      "lower the strength (or check the model file)");
        };
        if (out.stats != nullptr && !row_stats(row, n_vocab_, out.stats + (size_t) k * 3)) throw bad();
        if (out.logits == nullptr) continue;
        float * dst = out.logits + (size_t) k * n_cols;
        if (gather) {
            for (size_t c = 0; c < n_cols; ++c) dst[c] = row[req.gather_ids[c]];
        } else {
            std::memcpy(dst, row, n_cols * sizeof(float));
        }
        for (size_t c = 0; c < n_cols; ++c) {
            if (!std::isfinite(dst[c])) throw bad();
        }
    }
}

}  // namespace pyintro
