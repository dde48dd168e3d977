#include "engine.h"

#include <algorithm>
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

namespace {

// The name llama.cpp gives the residual stream after block il (<name><il>): "l_out-", except in
// graphs that use l_out for something else. nemotron_h names its block output
// nemotron_h_block_out, and its l_out is the feed-forward output before the residual sum, on
// feed-forward layers only (ref: src/models/nemotron-h.cpp).
std::string layer_output_name(const std::string & arch) {
    return arch == "nemotron_h" ? "nemotron_h_block_out-" : "l_out-";
}

// Architectures whose layer outputs hold several residual streams per token, [n_embd, tokens,
// streams]: gemma3n's four AltUp streams, of which llama.cpp's control vector is added to all
// (a broadcast ggml_add), and 0 is the active one (llama-hparams.h n_altup, i_altup_act;
// src/models/gemma3n.cpp).
bool several_streams(const std::string & arch) { return arch == "gemma3n"; }

}  // namespace

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
// Lifetime and description
// ---------------------------------------------------------------------------

Engine::Engine(const EngineParams & params) : debug_(params.debug), hook_(0, 0, &debug_) {
    if (params.n_seq_max < 1 || params.n_seq_max >= llama_max_parallel_sequences()) {
        throw std::invalid_argument("n_seq_max must be between 1 and " + std::to_string(llama_max_parallel_sequences() - 1));
    }
    if (params.n_ctx < 8 || params.n_batch < 1 || params.row_unit < 1) {
        throw std::invalid_argument("n_ctx must be at least 8, n_batch and row_unit at least 1");
    }
    const uint32_t n_batch = std::min(params.n_batch, params.n_ctx);
    if (params.row_unit > n_batch) {
        throw std::invalid_argument("row_unit (" + std::to_string(params.row_unit) + ") must not exceed n_batch (" +
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

    // Padding needs one scratch sequence, or with a recurrent memory up to row_unit - 1 sequences
    // after the last one a caller may use.
    recurrent_ = llama_model_is_recurrent(model_.get()) || llama_model_is_hybrid(model_.get());
    const uint32_t n_pad_seq = recurrent_ ? std::max(1u, params.row_unit - 1) : 1u;
    const uint32_t n_seq_llama = params.n_seq_max + n_pad_seq;
    if (n_seq_llama > llama_max_parallel_sequences()) {
        model_.reset();
        throw std::invalid_argument("n_seq_max must be between 1 and " +
                                    std::to_string(llama_max_parallel_sequences() - n_pad_seq) + " for this model");
    }
    if (debug_.layer_prefix == EngineDebug().layer_prefix) debug_.layer_prefix = layer_output_name(arch());
    vocab_ = llama_model_get_vocab(model_.get());
    n_layer_ = llama_model_n_layer(model_.get());
    n_embd_ = llama_model_n_embd(model_.get());
    n_vocab_ = llama_vocab_n_tokens(vocab_);
    hook_ = Hook(n_layer_, n_embd_, &debug_);
    hook_.set_streams(several_streams(arch()));

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
    row_unit_ = params.row_unit;
    flash_attn_ = params.flash_attn;
    n_seq_ = (int32_t) params.n_seq_max;
    n_seq_all_ = (int32_t) n_seq_llama;
    scratch_seq_ = n_seq_all_ - 1;
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
uint32_t Engine::n_seq_max() const { check_ctx(); return (uint32_t) n_seq_; }

std::string Engine::arch() const {
    if (!model_) throw std::runtime_error("this model has been closed; load it again");
    char buf[256];
    int32_t n = llama_model_meta_val_str(model_.get(), "general.architecture", buf, sizeof(buf));
    return n < 0 ? std::string() : std::string(buf);
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

size_t Engine::seq_state_bytes(int32_t seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    if (seq < 0 || seq >= (int32_t) n_seq_max()) throw std::invalid_argument("sequence id out of range");
    return llama_state_seq_get_size(ctx_.get(), seq);
}

int32_t Engine::seq_pos_max(int32_t seq) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    if (seq < 0 || seq >= (int32_t) n_seq_max()) throw std::invalid_argument("sequence id out of range");
    return llama_memory_seq_pos_max(llama_get_memory(ctx_.get()), seq);
}

void Engine::set_head(const std::vector<int32_t> & ids, float scale, float softcap) {
    std::lock_guard<std::mutex> lock(mutex_);
    check_ctx();
    head_.load(path_, n_embd_, n_vocab_, ids, scale, softcap);
}

}  // namespace pyintro
