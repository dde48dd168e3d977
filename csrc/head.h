// The fast head: a few rows of the output matrix and their logits from the final norm's rows,
// so that a caller who reads a few vocabulary ids skips llama.cpp's full unembedding
// (DecodeRequest::fast_head).
//
// Ownership: a Head owns copies of its rows; it reads the model file once (load) and never
// touches a llama.cpp object.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pyintro {

// The output matrix's rows for a few vocabulary ids, as the model file stores them (any ggml
// type), and what llama.cpp applies after the product: an output bias, a logit scale, final-logit
// softcapping (cap * tanh(x / cap)). The product runs through ggml's CPU vec_dot for that type,
// as llama.cpp's own one-row path does.
class Head {
public:
    // Reads the rows of output.weight (else the tied token_embd.weight) and of output.bias for
    // `ids` from the GGUF file at `path`. Throws std::invalid_argument (with the reason) where the
    // file has no single-file [n_embd, n_vocab] matrix or its type has no CPU dot product; the
    // Head is then unchanged.
    void load(const std::string & path, int32_t n_embd, int32_t n_vocab, const std::vector<int32_t> & ids,
              float scale, float softcap);

    // dst [n_rows, n_ids] = the logits of x [n_rows, n_embd] (the final norm's rows).
    void logits(const float * x, int32_t n_rows, float * dst) const;

    const std::vector<int32_t> & ids() const { return ids_; }

private:
    std::vector<int32_t> ids_;
    int32_t n_embd_ = 0;
    int32_t type_ = -1;          // ggml_type of the rows
    std::vector<uint8_t> rows_;  // ids_.size() rows, each ggml_row_size(type_, n_embd_) bytes
    std::vector<float> bias_;    // empty: none; else one per id
    float scale_ = 1.0f;         // the logit scale's multiplier (granite, cohere)
    float softcap_ = 0.0f;       // 0: none
};

}  // namespace pyintro
