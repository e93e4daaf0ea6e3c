// npy.h: a small, strict NPY reader/writer for the cmamba-hls testbenches (C++11, header only).
//
// Reads exactly what numpy.save writes for a C-order integer array: magic "\x93NUMPY", format
// version 1.0, 2.0 or 3.0, a header dict with 'descr', 'fortran_order' and 'shape'. Every check
// that fails is reported as one clear message (never garbage data):
//   wrong magic, unknown version, malformed header, a dtype other than the expected one
//   (e.g. "<i2" for int16, "|i1" for int8), fortran_order True, a shape other than the
//   expected one (-1 in the expected shape matches any length), truncated or over-long data.
// npy::read() returns false with the message in `err`; npy::load_or_exit() prints
// "npy: <path>: <message>" to stderr and exits with status 2.
// npy::save() writes a version 1.0 file that numpy.load reads back.
// Little-endian hosts only (x86, ARM): checked at run time.
#ifndef CMAMBA_NPY_H
#define CMAMBA_NPY_H

#include <stdint.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace npy {

inline bool host_is_little_endian() {
    const uint16_t probe = 1;
    unsigned char first = 0;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

inline std::string shape_str(const std::vector<long>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); i++) {
        if (i) s += ", ";
        s += shape[i] < 0 ? std::string("N") : std::to_string(shape[i]);
    }
    if (shape.size() == 1) s += ",";
    return s + ")";
}

// Value text of `key` in the header dict, up to the next top-level ',' or '}' (tuples kept).
inline bool header_value(const std::string& header, const std::string& key, std::string& value) {
    const std::string quoted[2] = {"'" + key + "'", "\"" + key + "\""};
    size_t pos = std::string::npos;
    for (const std::string& q : quoted) {
        pos = header.find(q);
        if (pos != std::string::npos) {
            pos += q.size();
            break;
        }
    }
    if (pos == std::string::npos) return false;
    pos = header.find(':', pos);
    if (pos == std::string::npos) return false;
    pos++;
    int depth = 0;
    size_t end = pos;
    for (; end < header.size(); end++) {
        const char c = header[end];
        if (c == '(') depth++;
        if (c == ')') depth--;
        if (depth == 0 && (c == ',' || c == '}')) break;
    }
    if (end >= header.size() || depth != 0) return false;
    size_t a = pos, b = end;
    while (a < b && (header[a] == ' ')) a++;
    while (b > a && (header[b - 1] == ' ')) b--;
    value = header.substr(a, b - a);
    return true;
}

inline bool parse_shape(const std::string& text, std::vector<long>& shape) {
    if (text.size() < 2 || text[0] != '(' || text[text.size() - 1] != ')') return false;
    shape.clear();
    size_t i = 1;
    while (i < text.size() - 1) {
        while (i < text.size() - 1 && (text[i] == ' ' || text[i] == ',')) i++;
        if (i >= text.size() - 1) break;
        if (text[i] < '0' || text[i] > '9') return false;
        long v = 0;
        while (i < text.size() - 1 && text[i] >= '0' && text[i] <= '9') {
            if (v > 100000000000L) return false;       // absurd: refuse rather than overflow
            v = v * 10 + (text[i] - '0');
            i++;
        }
        shape.push_back(v);
    }
    return true;
}

// Read `path` into `out` (element type T, whose size must match `descr`). `expect_shape`:
// the required shape, -1 for "any length" in that axis. On success `shape` holds the shape.
template<typename T>
bool read(const std::string& path, const std::string& descr, const std::vector<long>& expect_shape,
          std::vector<T>& out, std::vector<long>& shape, std::string& err) {
    if (!host_is_little_endian()) {
        err = "this reader supports little-endian hosts only";
        return false;
    }
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
        err = "cannot open file";
        return false;
    }
    std::vector<unsigned char> bytes;
    unsigned char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
    std::fclose(f);

    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (bytes.size() < 10 || std::memcmp(bytes.data(), magic, 6) != 0) {
        err = "not an NPY file (bad magic; expected \\x93NUMPY)";
        return false;
    }
    const int major = bytes[6], minor = bytes[7];
    size_t header_len, header_start;
    if (major == 1 && minor == 0) {
        header_len = bytes[8] | (size_t(bytes[9]) << 8);
        header_start = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (bytes.size() < 12) {
            err = "truncated header";
            return false;
        }
        header_len = bytes[8] | (size_t(bytes[9]) << 8) | (size_t(bytes[10]) << 16) | (size_t(bytes[11]) << 24);
        header_start = 12;
    } else {
        err = "unsupported NPY format version " + std::to_string(major) + "." + std::to_string(minor);
        return false;
    }
    if (bytes.size() < header_start + header_len) {
        err = "truncated header";
        return false;
    }
    const std::string header(bytes.begin() + header_start, bytes.begin() + header_start + header_len);
    std::string d, fo, sh;
    if (!header_value(header, "descr", d) || !header_value(header, "fortran_order", fo) ||
        !header_value(header, "shape", sh)) {
        err = "malformed header (needs 'descr', 'fortran_order', 'shape'): " + header;
        return false;
    }
    if (d.size() >= 2 && (d[0] == '\'' || d[0] == '"')) d = d.substr(1, d.size() - 2);
    if (d != descr) {
        err = "dtype '" + d + "', expected '" + descr + "'";
        return false;
    }
    if (sizeof(T) != size_t(std::atoi(descr.c_str() + 2))) {
        err = "reader element size does not match dtype '" + descr + "' (testbench bug)";
        return false;
    }
    if (fo != "False") {
        err = "fortran_order is " + fo + ", expected False (C order)";
        return false;
    }
    if (!parse_shape(sh, shape)) {
        err = "malformed shape " + sh;
        return false;
    }
    bool shape_ok = shape.size() == expect_shape.size();
    for (size_t i = 0; shape_ok && i < shape.size(); i++) {
        shape_ok = expect_shape[i] < 0 || expect_shape[i] == shape[i];
    }
    if (!shape_ok) {
        err = "shape " + shape_str(shape) + ", expected " + shape_str(expect_shape);
        return false;
    }
    size_t count = 1;
    for (long s : shape) count *= size_t(s);
    const size_t data_bytes = bytes.size() - header_start - header_len;
    if (data_bytes != count * sizeof(T)) {
        err = std::string(data_bytes < count * sizeof(T) ? "truncated data" : "trailing bytes after the data") +
              ": " + std::to_string(data_bytes) + " bytes, expected " + std::to_string(count * sizeof(T)) +
              " for shape " + shape_str(shape);
        return false;
    }
    out.resize(count);
    if (count) std::memcpy(out.data(), bytes.data() + header_start + header_len, count * sizeof(T));
    return true;
}

template<typename T>
std::vector<T> load_or_exit(const std::string& path, const std::string& descr,
                            const std::vector<long>& expect_shape, std::vector<long>& shape) {
    std::vector<T> out;
    std::string err;
    if (!read(path, descr, expect_shape, out, shape, err)) {
        std::fprintf(stderr, "npy: %s: %s\n", path.c_str(), err.c_str());
        std::exit(2);
    }
    return out;
}

// Write a C-order array (version 1.0 header padded to a multiple of 64 bytes). Returns false
// (with `err`) when the file cannot be written.
template<typename T>
bool save(const std::string& path, const std::string& descr, const std::vector<long>& shape,
          const std::vector<T>& data, std::string& err) {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
    const size_t unpadded = 10 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header += '\n';
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
        err = "cannot create file";
        return false;
    }
    const unsigned char pre[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    const unsigned char len[2] = {(unsigned char)(header.size() & 0xff), (unsigned char)(header.size() >> 8)};
    bool ok = std::fwrite(pre, 1, 8, f) == 8 && std::fwrite(len, 1, 2, f) == 2 &&
              std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
              std::fwrite(data.data(), sizeof(T), data.size(), f) == data.size();
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) err = "write failed";
    return ok;
}

}  // namespace npy

#endif  // CMAMBA_NPY_H
