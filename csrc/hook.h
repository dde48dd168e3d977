// The eval callback. During a decode, llama.cpp's scheduler shows each graph node to the
// hook (ref: ggml/src/ggml-backend.cpp, callback_eval); at the layer outputs l_out-<il> it
// adds injections to chosen rows and copies captured rows out.
//
// Ownership: a Hook belongs to one Engine; it borrows the Engine's EngineDebug for its life and
// the request's arrays for the length of one decode (arm .. disarm). It never frees llama.cpp
// objects.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct ggml_tensor;

namespace pyintro {

// The engine's test seams, in one place; with their defaults they change nothing.
struct EngineDebug {
    // Read and write layer tensors with ggml_backend_tensor_get/set even when they are in host
    // memory (the GPU path, tested on any machine).
    bool force_transfer = false;
    // ggml_backend_tensor_get/set calls made (a counter; Python may reset it).
    int64_t transfers = 0;
    // Name prefix of the per-layer output tensors (<prefix><il>) the hook acts on: "l_out-",
    // which the Engine replaces with the architecture's name for its block outputs where that
    // differs (engine.cpp, layer_output_name). A prefix no tensor has makes every injection and
    // capture fail loudly.
    std::string layer_prefix = "l_out-";
};

// One injection: add scale[row] * vec to row `row` of l_out-<il>.
// vec has n_embd floats; scale has one float per row of the whole request.
struct InjectSpec {
    int32_t il;
    std::vector<float> vec;
    std::vector<float> scale;
};

// What one decode asks of the hook (borrowed pointers, valid until disarm()).
struct HookPlan {
    const std::vector<InjectSpec> * inject = nullptr;
    const std::vector<int32_t> * capture_layers = nullptr;
    const std::vector<int32_t> * capture_rows = nullptr;  // request rows, increasing
    float * capture = nullptr;                            // [n_capture_layers, n_capture_rows, n_embd]
    // Stop the graph at "result_norm" (the final norm's output, one row per output) and copy
    // its rows into ``norm`` [outputs of the call, n_embd], so that the caller computes the
    // few logits it needs itself instead of the full unembedding.
    bool stop_at_norm = false;
};

// The rows of one llama_decode call: request rows begin .. begin + n_real, then padding rows
// (which the hook never touches) up to n_rows.
struct HookChunk {
    int32_t begin = 0;
    int32_t n_real = 0;
    int32_t n_rows = 0;
    std::vector<int32_t> out_rows;  // call rows that are outputs, increasing (padding outputs last)
};

class Hook {
public:
    // debug: the Engine's, read at every graph node and written by transfers (it outlives the Hook).
    Hook(int32_t n_layer, int32_t n_embd, EngineDebug * debug);

    // ggml_backend_sched_eval_callback; user_data is the Hook.
    static bool eval(ggml_tensor * t, bool ask, void * user_data);

    // arm() sets the plan of one decode; disarm() forgets it and must run on every exit path.
    void arm(const HookPlan & plan);
    void disarm();
    void begin_chunk(const HookChunk & chunk);
    // After the chunk's llama_decode: "" if all went well, else what went wrong (an overflow,
    // or a wanted layer whose tensor did not fire exactly once).
    std::string end_chunk(const std::string & arch);

    // The architecture keeps several residual streams per token, its layer outputs being
    // [n_embd, rows, streams] (gemma3n's AltUp); without this such a tensor is an error.
    void set_streams(bool on) { streams_ = on; }

    // With HookPlan::stop_at_norm: the final norm's rows of the last call, [n_outputs, n_embd].
    const std::vector<float> & norm_rows() const { return norm_; }

private:
    bool on_eval(ggml_tensor * t, bool ask);
    void apply(ggml_tensor * t, int32_t il);
    void apply_stream(ggml_tensor * t, int32_t il, int32_t k, int32_t n_rows_t, bool host, bool dense);
    void keep_norm(ggml_tensor * t);

    struct Row {
        int32_t r;       // tensor row
        int32_t req;     // request row
        bool inject;     // some injection at this layer has a non-zero scale here
        int32_t cap;     // index into capture_rows, or -1
    };

    int32_t n_layer_, n_embd_;
    EngineDebug * debug_;
    bool streams_ = false;
    HookPlan plan_;
    bool armed_ = false;
    HookChunk chunk_;
    std::vector<std::vector<int32_t>> layer_specs_;  // il -> indices into plan_.inject
    std::vector<int32_t> layer_capture_;             // il -> capture slot, or -1
    std::vector<uint8_t> layer_wanted_;
    std::vector<int32_t> hits_;                      // il -> times its tensor fired in this call
    std::vector<Row> rows_;
    std::vector<float> staging_;  // [n_rows of the tensor, n_embd] for the transfer path
    std::vector<float> norm_;     // result_norm's rows (stop_at_norm)
    int32_t norm_hits_ = 0;
    std::string error_;
};

}  // namespace pyintro
