// pyintro engine: one llama.cpp model and context; batched decodes with per-row injection
// into the layer outputs (l_out-<il>), capture, and logit gathers.
//
// Ownership: an Engine owns its llama_model, llama_context and llama_batch (RAII members,
// freed by close(), which is safe to call twice, or by the destructor). Nothing else holds
// these pointers.
//
// Batch invariance: a decode is cut into llama_decode calls of at most n_batch rows, and each
// call is padded so that its row count and its output count are multiples of row_unit: with
// rows of a scratch sequence, or, for a recurrent or hybrid memory (Mamba, RWKV, gated delta
// nets, short convolutions), with whole sequences of one row, each call then holding one row
// per sequence. With flash attention on and n_batch below 64, a row's values then depend only
// on its own sequence: not on the other rows of the call, on its slot, or on how the request
// was cut (see docs/numerics.md for why, and for what was measured).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "head.h"
#include "hook.h"

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_batch;

namespace pyintro {

struct EngineParams {
    std::string path;
    int32_t n_gpu_layers = 0;
    int32_t n_threads    = 1;
    uint32_t n_ctx       = 4096;  // KV cells, shared by all sequences
    uint32_t n_seq_max   = 128;   // sequences a caller may use (more are kept for padding)
    uint32_t n_batch     = 56;    // rows per llama_decode call, padding included
    uint32_t row_unit    = 8;     // pad each call's rows and outputs to a multiple of this (1: no padding)
    bool eval_callback   = true;  // false: plain decode, for measuring the no-hook limit
    bool flash_attn      = true;  // llama.cpp's flash attention (the row-local CPU kernel below 64 rows)
    EngineDebug debug;            // the test seams' initial values
};

// A batched decode. All per-row arrays have n_rows entries; rows are decoded in order.
struct DecodeRequest {
    std::vector<int32_t> tokens;
    std::vector<int32_t> pos;
    std::vector<int32_t> seq;
    std::vector<uint8_t> output;          // 1: this row is an output (logits, last-layer capture)
    std::vector<InjectSpec> inject;
    std::vector<int32_t> capture_layers;  // layers to copy out
    std::vector<int32_t> capture_rows;    // strictly increasing row indices
    std::vector<int32_t> gather_ids;      // vocab ids to return; empty: all of them
    // Compute the gathered logits from the final norm's rows and the Head (set_head), skipping
    // llama.cpp's full unembedding; gather_ids must be the head's ids.
    bool fast_head = false;
};

// Where results go; buffers are owned by the caller (numpy arrays).
// logits:  [n_outputs, n_cols], n_cols = gather_ids.size() or n_vocab; nullptr: no logits
// capture: [n_capture_layers, n_capture_rows, n_embd]
// stats:   [n_outputs, 3]: each output row's full-vocabulary max, log-sum-exp (summed in
//          double) and argmax; nullptr: none. Lets a caller that gathers a few ids still
//          normalise them, without copying n_vocab floats per row out.
struct DecodeOutputs {
    float * logits  = nullptr;
    float * capture = nullptr;
    double * stats  = nullptr;
};

struct ModelFree { void operator()(llama_model * m) const; };
struct ContextFree { void operator()(llama_context * c) const; };
struct BatchFree { void operator()(llama_batch * b) const; };

class Engine {
public:
    explicit Engine(const EngineParams & params);
    Engine(const Engine &) = delete;
    Engine & operator=(const Engine &) = delete;

    void close();
    bool closed() const { return ctx_ == nullptr; }

    int32_t n_layer() const { return n_layer_; }
    int32_t n_embd() const { return n_embd_; }
    int32_t n_vocab() const { return n_vocab_; }
    uint32_t n_ctx() const;
    uint32_t n_seq_max() const;  // sequences a caller may use: 0 .. n_seq_max - 1
    uint32_t n_batch() const { return n_batch_; }
    uint32_t row_unit() const { return row_unit_; }
    bool flash_attn() const { return flash_attn_; }
    std::string arch() const;
    std::string desc() const;
    std::string chat_template() const;
    std::vector<std::pair<std::string, std::string>> metadata() const;
    bool is_eog(int32_t token) const;
    // The vocabulary's begin-of-sequence token (-1: none) and whether prompts should start with it.
    int32_t bos() const;
    int32_t eos() const;
    bool add_bos() const;
    // Recurrent (Mamba, RWKV) or hybrid memory: calls are padded by sequence (see above).
    bool recurrent() const { return recurrent_; }
    // Bytes llama.cpp would save for sequence `seq` (llama_state_seq_get_size): its recurrent
    // state and its KV cells.
    size_t seq_state_bytes(int32_t seq);

    std::vector<int32_t> tokenize(const std::string & text, bool add_special, bool parse_special) const;
    std::string detokenize(const std::vector<int32_t> & tokens, bool remove_special, bool unparse_special) const;
    std::string token_piece(int32_t token) const;
    // messages: (role, content) pairs; add_assistant ends the prompt where the assistant speaks.
    // tmpl: a llama.cpp built-in template name or template text; empty: the model's own.
    std::string apply_chat_template(const std::vector<std::pair<std::string, std::string>> & messages,
                                    bool add_assistant, const std::string & tmpl) const;

    // Validates the request, then decodes it. Throws std::invalid_argument for bad input
    // (nothing decoded) and std::runtime_error for llama.cpp failures, for a wanted layer
    // whose tensor did not fire exactly once, for an overflowing injection and for NaN/Inf in
    // the returned logits. The engine stays usable after either; after a runtime_error the KV
    // memory may hold some of the request's rows, which the caller removes (seq_rm).
    void decode(const DecodeRequest & req, const DecodeOutputs & out);
    void validate(const DecodeRequest & req) const;

    // KV memory over sequences, positions [p0, p1); negative bounds are open.
    // seq_rm accepts seq -1 (every sequence); other calls need 0 <= seq < n_seq_max.
    void memory_clear();
    bool seq_rm(int32_t seq, int32_t p0, int32_t p1);
    void seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1);
    int32_t seq_pos_max(int32_t seq);

    // The test seams (EngineDebug); the hook reads them during every decode.
    EngineDebug & debug() { return debug_; }
    // Loads the Head for DecodeRequest::fast_head (Head::load, from this model's file).
    void set_head(const std::vector<int32_t> & ids, float scale, float softcap);
    // llama_decode calls made by the last decode().
    int32_t last_calls() const { return last_calls_; }

private:
    int32_t chunk_end(const DecodeRequest & req, int32_t begin) const;
    void check_padding_sequences(const DecodeRequest & req) const;
    void decode_chunk(const DecodeRequest & req, const DecodeOutputs & out, int32_t begin, int32_t end,
                      int32_t out_begin);
    void check_ctx() const;

    // Declared in this order so that the context is freed before the model.
    std::unique_ptr<llama_model, ModelFree> model_;
    std::unique_ptr<llama_context, ContextFree> ctx_;
    std::unique_ptr<llama_batch, BatchFree> batch_;
    const llama_vocab * vocab_ = nullptr;
    int32_t n_layer_ = 0, n_embd_ = 0, n_vocab_ = 0;
    uint32_t n_batch_ = 0, row_unit_ = 1;
    bool recurrent_ = false;
    int32_t n_seq_ = 0;        // sequences a caller may use
    int32_t n_seq_all_ = 0;    // llama.cpp's n_seq_max: n_seq_ and the padding sequences
    int32_t scratch_seq_ = 0;  // the padding rows' sequence (the last one), without recurrent_
    bool flash_attn_ = false;
    int32_t last_calls_ = 0;
    std::string path_;
    Head head_;
    EngineDebug debug_;
    Hook hook_;  // after debug_, which it borrows
    std::mutex mutex_;
};

bool supports_gpu_offload();
// (name, description, type) of each ggml backend device.
std::vector<std::vector<std::string>> backend_devices();
// llama.cpp's feature string ("CPU : SSE3 = 1 | AVX = 1 | ...").
std::string system_info();
// The chat template names llama.cpp knows ("chatml", "llama3", "gemma", ...).
std::vector<std::string> builtin_templates();

}  // namespace pyintro
