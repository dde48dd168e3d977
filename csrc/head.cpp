#include "head.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "ggml-cpu.h"
#include "ggml.h"
#include "gguf.h"

namespace pyintro {

namespace {

struct GgufFree {
    void operator()(gguf_context * g) const { gguf_free(g); }
};
struct GgmlFree {
    void operator()(ggml_context * c) const { ggml_free(c); }
};

// Rows ``ids`` of a 2-D tensor of the file (bytes as stored), into ``dst``.
void read_rows(std::ifstream & f, size_t offset, size_t row_bytes, const std::vector<int32_t> & ids,
               std::vector<uint8_t> & dst) {
    dst.resize(ids.size() * row_bytes);
    for (size_t i = 0; i < ids.size(); ++i) {
        f.seekg((std::streamoff) (offset + (size_t) ids[i] * row_bytes));
        f.read((char *) dst.data() + i * row_bytes, (std::streamsize) row_bytes);
        if (!f) throw std::invalid_argument("could not read the output matrix's rows from the model file");
    }
}

}  // namespace

void Head::load(const std::string & path, int32_t n_embd, int32_t n_vocab, const std::vector<int32_t> & ids,
                float scale, float softcap) {
    if (ids.empty()) throw std::invalid_argument("a head needs at least one vocab id");
    for (int32_t id : ids) {
        if (id < 0 || id >= n_vocab) throw std::invalid_argument("head id out of range");
    }
    // The tensor table only (no data): names, types, shapes, offsets.
    ggml_context * meta_raw = nullptr;
    gguf_init_params gp{/*no_alloc=*/true, /*ctx=*/&meta_raw};
    std::unique_ptr<gguf_context, GgufFree> g(gguf_init_from_file(path.c_str(), gp));
    std::unique_ptr<ggml_context, GgmlFree> meta(meta_raw);
    if (!g || !meta) throw std::invalid_argument("gguf could not read the model file's tensor table");
    const char * name = gguf_find_tensor(g.get(), "output.weight") >= 0 ? "output.weight" : "token_embd.weight";
    const int64_t ti = gguf_find_tensor(g.get(), name);
    ggml_tensor * w = ti >= 0 ? ggml_get_tensor(meta.get(), name) : nullptr;
    if (w == nullptr) throw std::invalid_argument("no output matrix in this file (a split model?)");
    if (ggml_n_dims(w) != 2 || w->ne[0] != n_embd || w->ne[1] < n_vocab) {
        throw std::invalid_argument(std::string(name) + " is not an [n_embd, n_vocab] matrix");
    }
    const ggml_type_traits_cpu * traits = ggml_get_type_traits_cpu(w->type);
    if (traits->vec_dot == nullptr || (traits->vec_dot_type != GGML_TYPE_F32 &&
                                       ggml_get_type_traits_cpu(traits->vec_dot_type)->from_float == nullptr)) {
        throw std::invalid_argument(std::string("type ") + ggml_type_name(w->type) + " has no CPU dot product");
    }
    if (n_embd % ggml_blck_size(w->type) != 0) throw std::invalid_argument("n_embd is not a whole number of blocks");

    Head head;
    head.ids_ = ids;
    head.n_embd_ = n_embd;
    head.type_ = (int32_t) w->type;
    head.scale_ = scale;
    head.softcap_ = softcap;
    const size_t data = gguf_get_data_offset(g.get());
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::invalid_argument("could not open the model file");
    read_rows(f, data + gguf_get_tensor_offset(g.get(), ti), ggml_row_size(w->type, n_embd), ids, head.rows_);
    const int64_t bi = gguf_find_tensor(g.get(), "output.bias");
    if (bi >= 0) {
        ggml_tensor * b = ggml_get_tensor(meta.get(), "output.bias");
        if (b == nullptr || b->type != GGML_TYPE_F32 || ggml_nelements(b) < n_vocab) {
            throw std::invalid_argument("output.bias is not an F32 vector of n_vocab");
        }
        std::vector<uint8_t> raw;
        read_rows(f, data + gguf_get_tensor_offset(g.get(), bi), sizeof(float), ids, raw);
        head.bias_.resize(ids.size());
        std::memcpy(head.bias_.data(), raw.data(), raw.size());
    }
    *this = std::move(head);
}

void Head::logits(const float * x, int32_t n_rows, float * dst) const {
    const ggml_type wt = (ggml_type) type_;
    const ggml_type_traits_cpu * traits = ggml_get_type_traits_cpu(wt);
    const ggml_type qt = traits->vec_dot_type;
    const size_t row = ggml_row_size(wt, n_embd_);
    std::vector<uint8_t> q(ggml_row_size(qt, n_embd_));
    const size_t n_ids = ids_.size();
    for (int32_t i = 0; i < n_rows; ++i) {
        const float * xi = x + (size_t) i * n_embd_;
        // the activation row in the dot product's type, as ggml's matrix product converts it
        if (qt == GGML_TYPE_F32) {
            std::memcpy(q.data(), xi, (size_t) n_embd_ * sizeof(float));
        } else {
            ggml_get_type_traits_cpu(qt)->from_float(xi, q.data(), n_embd_);
        }
        for (size_t c = 0; c < n_ids; ++c) {
            float s = 0.0f;
            traits->vec_dot(n_embd_, &s, 0, rows_.data() + c * row, 0, q.data(), 0, 1);
            if (!bias_.empty()) s += bias_[c];
            if (scale_ != 1.0f) s *= scale_;
            if (softcap_ != 0.0f) s = std::tanh(s * (1.0f / softcap_)) * softcap_;  // as ggml_scale, tanh, ggml_scale
            dst[(size_t) i * n_ids + c] = s;
        }
    }
}

}  // namespace pyintro
