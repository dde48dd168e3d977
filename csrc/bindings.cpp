// Python bindings for pyintro::Engine. Converts numpy inputs, allocates the
// numpy outputs, and releases the GIL while llama.cpp decodes.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "engine.h"
#include "log.h"
#include "llama.h"

namespace py = pybind11;
using pyintro::Engine;

namespace {

bool kind_in(const py::array & a, const char * kinds) {
    const char k = a.dtype().kind();
    return k != '\0' && std::strchr(kinds, k) != nullptr;
}

// A 1-D numeric array as std::vector<T>, converted here rather than by numpy's
// forcecast, which would silently truncate 5.7 to 5, wrap 2**32 + 5 to 5, and warn
// (an exception under -W error) on float64 past float32's range.
// Integer targets take only integer or bool input whose values fit T. Float targets
// take any real input; values past float32's range become +-Inf, which validate()
// refuses. Empty input of any numeric dtype is fine (np.array([]) is float64).
template <typename T>
std::vector<T> to_vector(const py::handle & obj, const char * what, size_t n_expected = (size_t) -1) {
    const std::string name(what);
    py::array raw = py::array::ensure(obj);
    if (!raw || !kind_in(raw, "biuf")) throw py::value_error(name + " must be a numeric array");
    if (raw.ndim() != 1) throw py::value_error(name + " must be one-dimensional");
    const size_t n = (size_t) raw.size();
    if (n_expected != (size_t) -1 && n != n_expected) {
        throw py::value_error(name + " has " + std::to_string(n) + " entries, expected " + std::to_string(n_expected));
    }
    std::vector<T> out(n);
    if (n == 0) return out;
    if constexpr (std::is_floating_point<T>::value) {
        auto src = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(raw);
        if (!src) throw py::value_error(name + " must be a numeric array");
        const double hi = std::numeric_limits<T>::max();
        for (size_t i = 0; i < n; ++i) {
            const double d = src.data()[i];  // double -> float past float's range is UB: make it +-Inf
            out[i] = d > hi ? std::numeric_limits<T>::infinity() : d < -hi ? -std::numeric_limits<T>::infinity() : (T) d;
        }
    } else {
        if (!kind_in(raw, "biu")) {
            throw py::value_error(name + " must hold integers, got dtype " + std::string(py::str(raw.dtype())));
        }
        const std::string too_big = name + " has a value that does not fit " + std::to_string(8 * sizeof(T)) + " bits";
        if (kind_in(raw, "bu")) {
            auto src = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(raw);
            if (!src) throw py::value_error(name + " must be a numeric array");
            for (size_t i = 0; i < n; ++i) {
                if (src.data()[i] > (uint64_t) std::numeric_limits<T>::max()) throw py::value_error(too_big);
                out[i] = (T) src.data()[i];
            }
        } else {
            auto src = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(raw);
            if (!src) throw py::value_error(name + " must be a numeric array");
            for (size_t i = 0; i < n; ++i) {
                const int64_t v = src.data()[i];
                if (v < (int64_t) std::numeric_limits<T>::min() || v > (int64_t) std::numeric_limits<T>::max()) {
                    throw py::value_error(too_big);
                }
                out[i] = (T) v;
            }
        }
    }
    return out;
}

// decode(tokens, pos, seq, output, inject=[(il, vec, scale)], capture_layers=[], capture_rows=[],
//        gather_ids=None, logits=True) -> (logits [n_outputs, n_cols], capture [n_layers, n_rows, n_embd])
// logits=False copies no logits out (the array is [0, 0]). stats=True adds a third result,
// [n_outputs, 3] float64: each output row's full-vocabulary max, log-sum-exp and argmax.
py::tuple engine_decode(Engine & eng, py::handle tokens, py::handle pos, py::handle seq, py::handle output,
                        py::list inject, py::handle capture_layers, py::handle capture_rows, py::handle gather_ids,
                        bool want_logits, bool want_stats, bool fast_head) {
    pyintro::DecodeRequest req;
    req.tokens = to_vector<int32_t>(tokens, "tokens");
    const size_t n = req.tokens.size();
    req.pos = to_vector<int32_t>(pos, "pos", n);
    req.seq = to_vector<int32_t>(seq, "seq", n);
    req.output = to_vector<uint8_t>(output, "output", n);
    for (auto item : inject) {
        if (!py::isinstance<py::sequence>(item) || py::len(item) != 3) {
            throw py::value_error("each injection is (layer, vector, scale)");
        }
        auto spec = py::reinterpret_borrow<py::sequence>(item);
        pyintro::InjectSpec s;
        if (!py::isinstance<py::int_>(spec[0]) && !py::hasattr(spec[0], "__index__")) {
            throw py::value_error("injection layer must be an int");
        }
        py::int_ il_obj(spec[0]);
        int64_t il = INT64_MAX;
        try {
            il = il_obj.cast<int64_t>();
        } catch (const py::cast_error &) {  // past 64 bits
        }
        if (il < INT32_MIN || il > INT32_MAX) {
            throw py::value_error("layer " + std::string(py::str(il_obj)) + " is out of range");
        }
        s.il = (int32_t) il;
        s.vec = to_vector<float>(spec[1], "vector");
        s.scale = to_vector<float>(spec[2], "scale", n);
        req.inject.push_back(std::move(s));
    }
    req.capture_layers = to_vector<int32_t>(capture_layers, "capture_layers");
    req.capture_rows = to_vector<int32_t>(capture_rows, "capture_rows");
    if (!gather_ids.is_none()) req.gather_ids = to_vector<int32_t>(gather_ids, "gather_ids");
    req.fast_head = fast_head;
    if (fast_head && (want_stats || !want_logits)) throw py::value_error("fast_head gives gathered logits only");
    eng.validate(req);

    size_t n_out = 0;
    for (uint8_t o : req.output) n_out += o ? 1 : 0;
    size_t n_cols = req.gather_ids.empty() ? (size_t) eng.n_vocab() : req.gather_ids.size();
    py::array_t<double> stats({want_stats ? n_out : (size_t) 0, (size_t) 3});
    if (!want_logits) n_cols = 0;
    py::array_t<float> logits({want_logits ? n_out : (size_t) 0, n_cols});
    py::array_t<float> capture({req.capture_layers.size(), req.capture_rows.size(), (size_t) eng.n_embd()});
    pyintro::DecodeOutputs out;
    out.logits = want_logits ? logits.mutable_data() : nullptr;
    out.stats = want_stats ? stats.mutable_data() : nullptr;
    out.capture = capture.mutable_data();
    {
        py::gil_scoped_release release;
        eng.decode(req, out);
    }
    if (want_stats) return py::make_tuple(logits, capture, stats);
    return py::make_tuple(logits, capture);
}

}  // namespace

PYBIND11_MODULE(_engine, m) {
    m.doc() = "pyintro's native core over llama.cpp (private; use pyintro.Model)";
    llama_backend_init();
    pyintro::log_install();

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::invalid_argument & e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });

    py::class_<pyintro::EngineDebug>(m, "EngineDebug")
        .def(py::init<>())
        .def_readwrite("force_transfer", &pyintro::EngineDebug::force_transfer)
        .def_readwrite("transfers", &pyintro::EngineDebug::transfers)
        .def_readwrite("layer_prefix", &pyintro::EngineDebug::layer_prefix);

    py::class_<pyintro::EngineParams>(m, "EngineParams")
        .def(py::init<>())
        .def_readwrite("path", &pyintro::EngineParams::path)
        .def_readwrite("n_gpu_layers", &pyintro::EngineParams::n_gpu_layers)
        .def_readwrite("n_threads", &pyintro::EngineParams::n_threads)
        .def_readwrite("n_ctx", &pyintro::EngineParams::n_ctx)
        .def_readwrite("n_seq_max", &pyintro::EngineParams::n_seq_max)
        .def_readwrite("n_batch", &pyintro::EngineParams::n_batch)
        .def_readwrite("row_unit", &pyintro::EngineParams::row_unit)
        .def_readwrite("eval_callback", &pyintro::EngineParams::eval_callback)
        .def_readwrite("flash_attn", &pyintro::EngineParams::flash_attn)
        .def_readwrite("debug", &pyintro::EngineParams::debug);

    py::class_<Engine>(m, "Engine")
        .def(py::init<const pyintro::EngineParams &>(), py::arg("params"), py::call_guard<py::gil_scoped_release>())
        .def("close", &Engine::close)
        .def_property_readonly("closed", &Engine::closed)
        .def_property_readonly("n_layer", &Engine::n_layer)
        .def_property_readonly("n_embd", &Engine::n_embd)
        .def_property_readonly("n_vocab", &Engine::n_vocab)
        .def_property_readonly("n_ctx", &Engine::n_ctx)
        .def_property_readonly("n_seq_max", &Engine::n_seq_max)
        .def_property_readonly("n_batch", &Engine::n_batch)
        .def_property_readonly("row_unit", &Engine::row_unit)
        .def_property_readonly("flash_attn", &Engine::flash_attn)
        .def_property_readonly("arch", &Engine::arch)
        .def_property_readonly("desc", &Engine::desc)
        .def_property_readonly("chat_template", &Engine::chat_template)
        .def("metadata", &Engine::metadata)
        .def("is_eog", &Engine::is_eog, py::arg("token"))
        .def_property_readonly("bos", &Engine::bos)
        .def_property_readonly("eos", &Engine::eos)
        .def_property_readonly("add_bos", &Engine::add_bos)
        .def_property_readonly("recurrent", &Engine::recurrent)
        .def("tokenize", &Engine::tokenize, py::arg("text"), py::arg("add_special"), py::arg("parse_special"))
        // Bytes, not str: a token can hold part of a UTF-8 character; Python decodes with "replace".
        .def("detokenize", [](const Engine & e, const std::vector<int32_t> & tokens, bool remove_special,
                              bool unparse_special) { return py::bytes(e.detokenize(tokens, remove_special, unparse_special)); },
             py::arg("tokens"), py::arg("remove_special") = false, py::arg("unparse_special") = true)
        .def("token_piece", [](const Engine & e, int32_t token) { return py::bytes(e.token_piece(token)); },
             py::arg("token"))
        .def("apply_chat_template", &Engine::apply_chat_template, py::arg("messages"), py::arg("add_assistant") = true,
             py::arg("template") = std::string())
        .def("decode", &engine_decode, py::arg("tokens"), py::arg("pos"), py::arg("seq"), py::arg("output"),
             py::arg("inject") = py::list(), py::arg("capture_layers") = py::array_t<int32_t>(0),
             py::arg("capture_rows") = py::array_t<int32_t>(0), py::arg("gather_ids") = py::none(),
             py::arg("logits") = true, py::arg("stats") = false, py::arg("fast_head") = false)
        .def("set_head", [](Engine & e, py::handle ids, float scale, float softcap) {
                 e.set_head(to_vector<int32_t>(ids, "ids"), scale, softcap);
             }, py::arg("ids"), py::arg("scale") = 1.0f, py::arg("softcap") = 0.0f)
        .def_property_readonly("last_calls", &Engine::last_calls)
        // The test seams (EngineDebug), changed in place: engine.debug.force_transfer = True.
        .def_property_readonly("debug", [](Engine & e) -> pyintro::EngineDebug & { return e.debug(); },
                               py::return_value_policy::reference_internal)
        .def("memory_clear", &Engine::memory_clear)
        .def("seq_rm", &Engine::seq_rm, py::arg("seq"), py::arg("p0"), py::arg("p1"))
        .def("seq_cp", &Engine::seq_cp, py::arg("src"), py::arg("dst"), py::arg("p0"), py::arg("p1"))
        .def("seq_pos_max", &Engine::seq_pos_max, py::arg("seq"))
        .def("seq_state_bytes", &Engine::seq_state_bytes, py::arg("seq"));

    m.def("log_drain", []() {
        py::list out;
        for (const auto & line : pyintro::log_drain()) out.append(py::make_tuple(line.level, line.text));
        return out;
    });
    m.def("log_install", &pyintro::log_install);
    m.def("supports_gpu_offload", &pyintro::supports_gpu_offload);
    m.def("backend_devices", &pyintro::backend_devices);
    m.def("system_info", &pyintro::system_info);
    m.def("builtin_templates", &pyintro::builtin_templates);
    // at most: one is kept for padding (a recurrent model keeps row_unit - 1, Engine says so)
    m.attr("MAX_SEQ") = (int) llama_max_parallel_sequences() - 1;
}
