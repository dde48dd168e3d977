// pyintro engine: one llama.cpp model + context, batched decode with per-row
// injection into layer outputs (l_out-<il>), capture, and logit gathers.
//
// Ownership: an Engine owns its llama_model, llama_context and llama_batch and
// frees them in close() (safe to call twice) or its destructor. Nothing else
// holds these pointers.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

struct llama_model;
struct llama_context;
struct llama_vocab;
struct ggml_tensor;

namespace pyintro {

struct EngineParams {
    std::string path;
    int32_t n_gpu_layers = 0;
    int32_t n_threads    = 1;
    uint32_t n_ctx       = 4096;
    uint32_t n_seq_max   = 256;
    uint32_t n_batch     = 512;
    bool eval_callback   = true;  // false: plain decode, for measuring the no-hook limit
    bool flash_attn      = false; // llama.cpp's flash attention (its CPU kernel makes results depend on batch layout)
    // Name prefix of the per-layer output tensors (<prefix><il>) the hook acts on.
    // A test seam: a prefix no tensor has makes every injection/capture fail loudly.
    std::string layer_prefix = "l_out-";
};

// One injection: add scale[row] * vec to row `row` of l_out-<il>.
// vec has n_embd floats; scale has one float per row of the whole request.
struct InjectSpec {
    int32_t il;
    std::vector<float> vec;
    std::vector<float> scale;
};

// A batched decode. All per-row arrays have n_rows entries.
// Rows are decoded in order, in chunks of at most n_batch rows.
struct DecodeRequest {
    std::vector<int32_t> tokens;
    std::vector<int32_t> pos;
    std::vector<int32_t> seq;
    std::vector<uint8_t> output;          // 1: return logits for this row
    std::vector<InjectSpec> inject;
    std::vector<int32_t> capture_layers;  // layers to copy out
    std::vector<int32_t> capture_rows;    // strictly increasing row indices
    std::vector<int32_t> gather_ids;      // vocab ids to return; empty: all of them
};

// Where results go; buffers are owned by the caller (numpy arrays).
// logits:  [n_outputs, n_cols]  n_cols = gather_ids.size() or n_vocab
// capture: [n_capture_layers, n_capture_rows, n_embd]
struct DecodeOutputs {
    float * logits  = nullptr;
    float * capture = nullptr;
};

struct LogLine {
    int level;  // ggml_log_level
    std::string text;
};

class Engine {
public:
    explicit Engine(const EngineParams & params);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine & operator=(const Engine &) = delete;

    void close();
    bool closed() const { return ctx_ == nullptr; }

    int32_t n_layer() const { return n_layer_; }
    int32_t n_embd() const { return n_embd_; }
    int32_t n_vocab() const { return n_vocab_; }
    uint32_t n_ctx() const;
    uint32_t n_seq_max() const;
    uint32_t n_batch() const { return n_batch_; }
    std::string arch() const;
    std::string desc() const;
    std::string chat_template() const;
    std::vector<std::pair<std::string, std::string>> metadata() const;
    bool is_eog(int32_t token) const;
    // Recurrent (Mamba, RWKV) or hybrid memory: positions cannot be removed from the middle
    // of a sequence, so shared prefixes cannot be reused.
    bool recurrent() const;

    std::vector<int32_t> tokenize(const std::string & text, bool add_special, bool parse_special) const;
    std::string detokenize(const std::vector<int32_t> & tokens, bool remove_special, bool unparse_special) const;
    std::string token_piece(int32_t token) const;
    // messages: (role, content) pairs; add_assistant ends the prompt where the assistant speaks.
    std::string apply_chat_template(const std::vector<std::pair<std::string, std::string>> & messages,
                                    bool add_assistant) const;

    // Validates the request, then decodes it. Throws std::invalid_argument for
    // bad input (nothing decoded) and std::runtime_error for llama.cpp failures,
    // for a wanted layer whose tensor did not fire exactly once, and for NaN/Inf
    // in the returned logits. After a runtime_error the KV memory may hold some
    // of the request's rows; the caller removes them (seq_rm).
    void decode(const DecodeRequest & req, const DecodeOutputs & out);
    void validate(const DecodeRequest & req) const;

    // KV memory over sequences, positions [p0, p1); negative bounds are open.
    // seq_rm accepts seq -1 (every sequence); other calls need 0 <= seq < n_seq_max.
    void memory_clear();
    bool seq_rm(int32_t seq, int32_t p0, int32_t p1);
    void seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1);
    int32_t seq_pos_max(int32_t seq);

    // Number of times l_out-<il> was seen during the last decode call, per layer.
    const std::vector<int32_t> & layer_hits() const { return hits_total_; }

    // Called by llama.cpp's scheduler for each graph node (see ggml-backend.cpp callback_eval).
    bool on_eval(ggml_tensor * t, bool ask);

private:
    void decode_chunk(const DecodeRequest & req, const DecodeOutputs & out, int32_t begin, int32_t end,
                      int32_t out_begin);
    void apply_layer(ggml_tensor * t, int32_t il);
    void check_ctx() const;

    llama_model * model_ = nullptr;
    llama_context * ctx_ = nullptr;
    const llama_vocab * vocab_ = nullptr;
    void * batch_ = nullptr;  // llama_batch*, heap allocated
    int32_t n_layer_ = 0, n_embd_ = 0, n_vocab_ = 0;
    uint32_t n_batch_ = 0;
    std::string layer_prefix_;
    std::mutex mutex_;

    // Per-chunk state read by on_eval (set while mutex_ is held).
    const DecodeRequest * cur_req_ = nullptr;
    const DecodeOutputs * cur_out_ = nullptr;
    int32_t cur_begin_ = 0, cur_end_ = 0;
    std::vector<int32_t> cur_out_rows_;              // chunk-relative rows that are outputs
    std::vector<std::vector<int32_t>> layer_specs_;  // il -> indices into req.inject
    std::vector<int32_t> layer_capture_;             // il -> capture slot, or -1
    std::vector<uint8_t> layer_wanted_;
    std::vector<int32_t> hits_chunk_, hits_total_;
    std::vector<float> scratch_;
    std::string cb_error_;
};

// llama.cpp's log, buffered so Python can drain it into `logging`
// (the callback may run on llama.cpp's threads, which never touch Python).
void log_install();
std::vector<LogLine> log_drain();
std::string log_last_errors();

bool supports_gpu_offload();
// (name, description, type) of each ggml backend device.
std::vector<std::vector<std::string>> backend_devices();

}  // namespace pyintro
