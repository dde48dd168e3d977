#include "hook.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ggml-backend.h"
#include "ggml.h"

namespace pyintro {

namespace {

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

}  // namespace

Hook::Hook(int32_t n_layer, int32_t n_embd, EngineDebug * debug)
    : n_layer_(n_layer), n_embd_(n_embd), debug_(debug),
      layer_specs_(n_layer), layer_capture_(n_layer, -1), layer_wanted_(n_layer, 0), hits_(n_layer, 0) {}

bool Hook::eval(ggml_tensor * t, bool ask, void * user_data) {
    return static_cast<Hook *>(user_data)->on_eval(t, ask);
}

void Hook::arm(const HookPlan & plan) {
    plan_ = plan;
    for (int32_t il = 0; il < n_layer_; ++il) {
        layer_specs_[il].clear();
        layer_capture_[il] = -1;
        layer_wanted_[il] = 0;
    }
    for (size_t k = 0; k < plan.inject->size(); ++k) {
        const InjectSpec & spec = (*plan.inject)[k];
        bool any = false;
        for (float s : spec.scale) any = any || s != 0.0f;
        if (!any) continue;  // rows with scale 0 are never touched
        layer_specs_[spec.il].push_back((int32_t) k);
        layer_wanted_[spec.il] = 1;
    }
    for (size_t slot = 0; slot < plan.capture_layers->size(); ++slot) {
        int32_t il = (*plan.capture_layers)[slot];
        layer_capture_[il] = (int32_t) slot;
        if (!plan.capture_rows->empty()) layer_wanted_[il] = 1;
    }
    armed_ = true;
}

void Hook::disarm() {
    armed_ = false;
    plan_ = HookPlan();
    chunk_ = HookChunk();
    error_.clear();
}

void Hook::begin_chunk(const HookChunk & chunk) {
    chunk_ = chunk;
    error_.clear();
    norm_hits_ = 0;
    std::fill(hits_.begin(), hits_.end(), 0);
}

std::string Hook::end_chunk(const std::string & arch) {
    if (!error_.empty()) return error_;
    if (plan_.stop_at_norm && norm_hits_ != 1) {
        return "the graph of architecture '" + arch + "' has no single result_norm tensor; read the logits in full";
    }
    for (int32_t il = 0; il < n_layer_; ++il) {
        if (!layer_wanted_[il]) continue;
        if (hits_[il] == 0) {
            return "layer " + std::to_string(il) + ": no tensor named " + debug_->layer_prefix + std::to_string(il) +
                   " in this model's graph (architecture '" + arch +
                   "' does not name its layer outputs); pyintro cannot inject or capture here";
        }
        if (hits_[il] > 1) {
            return "layer " + std::to_string(il) + " was computed " + std::to_string(hits_[il]) +
                   " times in one decode (llama.cpp split the batch); use a smaller batch";
        }
    }
    return std::string();
}

bool Hook::on_eval(ggml_tensor * t, bool ask) {
    if (armed_ && plan_.stop_at_norm && std::strcmp(t->name, "result_norm") == 0) {
        if (ask) return true;
        ++norm_hits_;
        keep_norm(t);
        return false;  // the scheduler stops this split here: the unembedding is never computed
    }
    int32_t il = armed_ ? parse_layer_name(t->name, debug_->layer_prefix) : -1;
    if (il < 0 || il >= n_layer_) return ask ? false : true;
    if (ask) return layer_wanted_[il] != 0;
    hits_[il] += 1;
    if (layer_wanted_[il] && error_.empty()) apply(t, il);
    return true;  // false would stop the graph computation
}

// Copies result_norm ([n_embd, n_outputs], F32) into norm_, by rows.
void Hook::keep_norm(ggml_tensor * t) {
    const int32_t n = (int32_t) t->ne[1];
    if (t->type != GGML_TYPE_F32 || t->ne[0] != n_embd_ || t->ne[2] != 1 || t->ne[3] != 1 ||
        n != (int32_t) chunk_.out_rows.size()) {
        error_ = "result_norm is not an F32 [n_embd, outputs] tensor; read the logits in full";
        return;
    }
    const size_t row_bytes = (size_t) n_embd_ * sizeof(float);
    norm_.resize((size_t) n * n_embd_);
    const bool host = !debug_->force_transfer && (t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer));
    if (!host && t->nb[1] == row_bytes) {  // device memory, rows back to back: one copy
        ggml_backend_tensor_get(t, norm_.data(), 0, row_bytes * (size_t) n);
        ++debug_->transfers;
        return;
    }
    for (int32_t r = 0; r < n; ++r) {
        float * dst = norm_.data() + (size_t) r * n_embd_;
        if (host) {
            std::memcpy(dst, (const char *) t->data + (size_t) r * t->nb[1], row_bytes);
        } else {
            ggml_backend_tensor_get(t, dst, (size_t) r * t->nb[1], row_bytes);
            ++debug_->transfers;
        }
    }
}

// Adds the injections for layer il to t, then copies out the captured rows.
// t is [n_embd, n_rows_t]: every row of the call, or in the last layer only the output rows
// (llama.cpp drops the others there, ref: llama-graph.cpp build_inp_out_ids). With
// several residual streams (set_streams) it is [n_embd, n_rows_t, streams]: an injection is
// added to every stream of its row, as llama.cpp's control vector is, and a capture reads
// stream 0, the active one.
// Host tensors are changed in place. Device tensors (or any, with force_transfer) go through
// a host copy: one ggml_backend_tensor_get of the span of touched rows, the same float
// arithmetic as in place, and one ggml_backend_tensor_set of the span of injected rows.
// Sets error_ if t has an unexpected shape, or if a row's sum of squares overflows float32
// after the injection (a norm would then turn it into Inf/NaN or zeros).
void Hook::apply(ggml_tensor * t, int32_t il) {
    const std::string name = debug_->layer_prefix + std::to_string(il);
    // Recurrent graphs may keep the layer output as [n_embd, tokens per sequence, sequences];
    // with rows back to back that is one row per token, as a 2-D tensor.
    const bool rows_3d = t->ne[2] > 1 && t->ne[3] == 1 && t->nb[2] == t->nb[1] * t->ne[1] &&
                         (t->ne[1] * t->ne[2] == chunk_.n_rows || t->ne[1] * t->ne[2] == (int64_t) chunk_.out_rows.size());
    const int32_t n_rows_t = (int32_t) (rows_3d ? t->ne[1] * t->ne[2] : t->ne[1]);
    bool out_only;
    if (n_rows_t == chunk_.n_rows) {
        out_only = false;
    } else if (n_rows_t == (int32_t) chunk_.out_rows.size()) {
        out_only = true;
    } else {
        error_ = name + " has " + std::to_string(n_rows_t) + " rows, expected " + std::to_string(chunk_.n_rows);
        return;
    }
    const bool streams = t->ne[2] > 1 && !rows_3d;
    if ((streams && !streams_) || t->ne[3] != 1) {
        error_ = name + " has shape [" + std::to_string(t->ne[0]) + ", " + std::to_string(t->ne[1]) + ", " +
                 std::to_string(t->ne[2]) + ", " + std::to_string(t->ne[3]) +
                 "]: this architecture keeps several residual streams per token, and pyintro adds to and "
                 "reads one row per token only; use another model";
        return;
    }
    if (t->type != GGML_TYPE_F32 || t->ne[0] != n_embd_ || t->nb[0] != sizeof(float)) {
        error_ = name + " is not an F32 [n_embd, rows] tensor";
        return;
    }

    const std::vector<InjectSpec> & inject = *plan_.inject;
    const std::vector<int32_t> & specs = layer_specs_[il];
    const std::vector<int32_t> & cap_rows = *plan_.capture_rows;
    const int32_t slot = plan_.capture != nullptr ? layer_capture_[il] : -1;
    rows_.clear();
    for (int32_t r = 0; r < n_rows_t; ++r) {
        const int32_t c = out_only ? chunk_.out_rows[r] : r;
        if (c >= chunk_.n_real) continue;  // padding
        const int32_t req = chunk_.begin + c;
        bool inj = false;
        for (int32_t k : specs) inj = inj || inject[k].scale[req] != 0.0f;
        int32_t cap = -1;
        if (slot >= 0) {
            auto it = std::lower_bound(cap_rows.begin(), cap_rows.end(), req);
            if (it != cap_rows.end() && *it == req) cap = (int32_t) (it - cap_rows.begin());
        }
        if (inj || cap >= 0) rows_.push_back({r, req, inj, cap});
    }
    if (rows_.empty()) return;

    const size_t row_bytes = (size_t) n_embd_ * sizeof(float);
    const bool host = !debug_->force_transfer && (t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer));
    const bool dense = t->nb[1] == row_bytes;  // rows back to back: a span is one transfer
    for (int32_t k = 0; k < (streams ? (int32_t) t->ne[2] : 1); ++k) {
        apply_stream(t, il, k, n_rows_t, host, dense);
    }
}

// apply() for stream k of t (0 without streams): injections, then a capture from stream 0.
void Hook::apply_stream(ggml_tensor * t, int32_t il, int32_t k, int32_t n_rows_t, bool host, bool dense) {
    const std::vector<InjectSpec> & inject = *plan_.inject;
    const std::vector<int32_t> & specs = layer_specs_[il];
    const std::vector<int32_t> & cap_rows = *plan_.capture_rows;
    const int32_t slot = plan_.capture != nullptr ? layer_capture_[il] : -1;
    const size_t row_bytes = (size_t) n_embd_ * sizeof(float);
    const size_t base = (size_t) k * t->nb[2];
    auto transfer = [&](bool set, int32_t r0, int32_t r1) {  // rows r0 .. r1 inclusive
        for (int32_t r = r0; r <= r1; r = dense ? r1 + 1 : r + 1) {
            const size_t n = dense ? (size_t) (r1 - r0 + 1) * row_bytes : row_bytes;
            float * buf = staging_.data() + (size_t) r * n_embd_;
            if (set) {
                ggml_backend_tensor_set(t, buf, base + (size_t) r * t->nb[1], n);
            } else {
                ggml_backend_tensor_get(t, buf, base + (size_t) r * t->nb[1], n);
            }
            ++debug_->transfers;
        }
    };
    if (!host) {
        staging_.resize((size_t) n_rows_t * n_embd_);
        transfer(false, rows_.front().r, rows_.back().r);
    }

    int32_t inj_lo = -1, inj_hi = -1;
    for (const Row & row : rows_) {
        float * x = host ? (float *) ((char *) t->data + base + (size_t) row.r * t->nb[1])
                         : staging_.data() + (size_t) row.r * n_embd_;
        if (row.inject) {
            for (int32_t k : specs) {
                const float s = inject[k].scale[row.req];
                if (s == 0.0f) continue;
                const float * v = inject[k].vec.data();
                for (int32_t e = 0; e < n_embd_; ++e) x[e] += s * v[e];
            }
            float ss = 0.0f;
            for (int32_t e = 0; e < n_embd_; ++e) ss += x[e] * x[e];
            if (!std::isfinite(ss) && error_.empty()) {
                error_ = "injection at layer " + std::to_string(il) + " overflowed the residual stream of row " +
                         std::to_string(row.req) + " (its sum of squares leaves float32's range, or holds NaN/Inf); "
                         "lower the strength";
            }
            if (inj_lo < 0) inj_lo = row.r;
            inj_hi = row.r;
        }
        if (row.cap >= 0 && k == 0) {
            float * dst = plan_.capture + ((size_t) slot * cap_rows.size() + row.cap) * n_embd_;
            std::memcpy(dst, x, row_bytes);
        }
    }
    if (!host && inj_lo >= 0) transfer(true, inj_lo, inj_hi);
}

}  // namespace pyintro
