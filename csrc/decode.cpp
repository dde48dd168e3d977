// Batched decodes: validation, the cut into llama_decode calls, padding, and the results.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "engine.h"
#include "llama.h"
#include "log.h"

namespace pyintro {

namespace {

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

// The padding of one llama_decode call that holds n real rows of which o are outputs, to make
// its rows and its outputs multiples of q: `rows` padding rows, the first `outputs` of them
// outputs. By rows: first to a multiple of q outputs, then to a multiple of q rows. By
// sequence (one row per sequence): whole padding sequences, at least the missing outputs.
struct Padding {
    int32_t rows;
    int32_t outputs;
};

Padding padding_of(int32_t n, int32_t o, int32_t q, bool by_sequence) {
    const int32_t po = (q - o % q) % q;
    if (!by_sequence) return {po + (q - (n + po) % q) % q, po};
    int32_t d = (q - n % q) % q;
    if (d < po) d += q;
    return {d, po};
}

}  // namespace

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
    if (req.fast_head && req.gather_ids != head_.ids()) {
        throw std::invalid_argument("fast_head needs gather_ids equal to the head's ids (set_head)");
    }
    if (recurrent_) check_padding_sequences(req);
}

// A recurrent memory pads each call with whole sequences, the ids right after the call's last
// one: they must exist, stay out of the request and hold no state.
void Engine::check_padding_sequences(const DecodeRequest & req) const {
    std::vector<uint8_t> in_request(n_seq_all_, 0);
    for (int32_t s : req.seq) in_request[s] = 1;
    llama_memory_t mem = llama_get_memory(ctx_.get());
    const int32_t n_rows = (int32_t) req.tokens.size();
    for (int32_t begin = 0; begin < n_rows;) {
        const int32_t end = chunk_end(req, begin);
        int32_t n_out = 0;
        for (int32_t i = begin; i < end; ++i) n_out += req.output[i] ? 1 : 0;
        const Padding pad = padding_of(end - begin, n_out, (int32_t) row_unit_, true);
        for (int32_t k = 1; k <= pad.rows; ++k) {
            const int32_t s = req.seq[end - 1] + k;
            const char * why = s >= n_seq_all_ ? "beyond the last sequence"
                               : in_request[s] ? "in this request" : llama_memory_seq_pos_max(mem, s) >= 0 ? "in use" : nullptr;
            if (why != nullptr) {
                throw std::invalid_argument("sequence " + std::to_string(s) + " would pad a call of this recurrent model but is " +
                                            why + "; each call's sequences must be followed by unused ones");
            }
        }
        begin = end;
    }
}

// The end of the llama_decode call that starts at row `begin`: as many rows as fit n_batch
// once padded, at least one. A recurrent memory takes one row per sequence, in consecutive
// increasing ids, so that llama.cpp's split_equal keeps the call in one ubatch whose every
// sequence has one token (ref: llama-batch.cpp split_equal; docs/numerics.md says why one).
int32_t Engine::chunk_end(const DecodeRequest & req, int32_t begin) const {
    const int32_t n_rows = (int32_t) req.tokens.size();
    const int32_t q = (int32_t) row_unit_;
    int32_t end = begin, n_out = 0;
    while (end < n_rows) {
        if (recurrent_ && end > begin && req.seq[end] != req.seq[end - 1] + 1) break;
        const int32_t o = n_out + (req.output[end] ? 1 : 0);
        if (end > begin && end - begin + 1 + padding_of(end - begin + 1, o, q, recurrent_).rows > (int32_t) n_batch_) break;
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

// One llama_decode call: request rows [begin, end), then padding rows (token 0; the first
// ones outputs), removed afterwards: rows 0, 1, ... of the scratch sequence, or for a
// recurrent memory one row at position 0 of each sequence after the call's last one.
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
    const int32_t n_out_real = (int32_t) chunk.out_rows.size();
    const Padding pad = padding_of(n_real, n_out_real, (int32_t) row_unit_, recurrent_);
    const int32_t n_total = n_real + pad.rows;
    const int32_t pad_seq = recurrent_ ? req.seq[end - 1] + 1 : scratch_seq_;
    for (int32_t j = n_real; j < n_total; ++j) {
        const int32_t k = j - n_real;
        batch.token[j] = 0;
        batch.pos[j] = recurrent_ ? 0 : k;
        batch.n_seq_id[j] = 1;
        batch.seq_id[j][0] = recurrent_ ? pad_seq + k : scratch_seq_;
        batch.logits[j] = k < pad.outputs;
        if (k < pad.outputs) chunk.out_rows.push_back(j);
    }
    batch.n_tokens = n_total;
    chunk.n_rows = n_total;
    hook_.begin_chunk(chunk);

    llama_memory_t mem = llama_get_memory(ctx_.get());
    const int32_t rc = llama_decode(ctx_.get(), batch);
    ++last_calls_;
    for (int32_t k = 0; k < (recurrent_ ? pad.rows : std::min(pad.rows, 1)); ++k) {
        llama_memory_seq_rm(mem, pad_seq + k, -1, -1);
    }
    if (rc != 0) {
        std::string what = rc == 1 ? "no room left in the KV cache (load the model with a larger n_ctx, or use fewer points per call)"
                                   : "llama_decode failed with code " + std::to_string(rc);
        throw std::runtime_error(with_reason(what));
    }
    std::string err = hook_.end_chunk(arch());
    if (!err.empty()) throw std::runtime_error(err);

    if (out.logits == nullptr && out.stats == nullptr) return;
    if (req.fast_head) {
        const size_t n_ids = head_.ids().size();
        float * dst = out.logits + (size_t) out_begin * n_ids;
        head_.logits(hook_.norm_rows().data(), n_out_real, dst);  // the real outputs come first in the call
        for (size_t c = 0; c < (size_t) n_out_real * n_ids; ++c) {
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
