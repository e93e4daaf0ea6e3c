// replay.cpp: check the conformance kit (tests/spec_vectors/) against a C++ implementation
// written from docs/quant-spec.md alone -- no Python, no generated headers, no cmamba-hls code
// except the NPY reader hls_tb/npy.h. It is what an RTL or firmware testbench does:
//   read cases.txt ("id precision op" per line), and for each case it implements read
//   <id>/params.txt ("name value" integers) and the <id>/*.npy arrays, compute, compare.
//
//   g++ -std=c++14 -O2 -I hls_tb examples/spec_replay/replay.cpp -o replay
//   ./replay tests/spec_vectors            # "replay: N cases, M values, all equal" (exit 0)
//
// Implemented here: the primitives rne_shift, shift_round, rne_div, requantize (spec 1.2-1.5,
// 3.3), the INT16 and INT8 scans (2.7, 3.6) and LUT reads (2.5/2.6, 3.5). Other cases are
// listed as skipped: extending it is one function per operator.
#include <stdint.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "npy.h"

typedef int64_t i64;

// ---- spec 1: primitives ----
static i64 rne_shift(i64 x, int n) {                      // RNE(x / 2^n), 0 <= n <= 62
    if (n == 0) return x;
    i64 q = x >> n;                                       // floor
    const uint64_t r = uint64_t(x) & ((uint64_t(1) << n) - 1);
    const uint64_t half = uint64_t(1) << (n - 1);
    if (r > half || (r == half && (q & 1))) q += 1;       // ties to even
    return q;
}
static i64 shift_round(i64 x, int n) {                    // n > 0: RNE right; n <= 0: exact left
    return n > 0 ? rne_shift(x, n) : i64(uint64_t(x) << -n);
}
static i64 sat(i64 x, int bits) {
    const i64 hi = (i64(1) << (bits - 1)) - 1, lo = -hi - 1;
    return x > hi ? hi : (x < lo ? lo : x);
}
static i64 rne_div(i64 num, i64 den) {                    // RNE(num / den), den > 0
    i64 q = num / den, r = num % den;
    if (r < 0) { r += den; q -= 1; }                      // floor division, 0 <= r < den
    const i64 other = den - r;
    if (r > other || (r == other && (q & 1))) q += 1;
    return q;
}
static i64 requantize8(i64 acc, i64 m0, int shift, i64 zp) {
    return sat(rne_shift(acc * m0, shift) + zp, 8);
}

// ---- kit files ----
struct Case {
    std::string dir;
    std::map<std::string, i64> p;
    i64 param(const std::string& k) const {
        std::map<std::string, i64>::const_iterator it = p.find(k);
        if (it == p.end()) {
            std::fprintf(stderr, "replay: %s: no parameter '%s'\n", dir.c_str(), k.c_str());
            std::exit(2);
        }
        return it->second;
    }
    // any integer NPY (descr given) widened to int64; shape returned in `shape`
    template<typename T>
    std::vector<i64> load(const std::string& name, const char* descr, std::vector<long>& shape) const {
        std::vector<long> any;
        std::string err;
        std::vector<T> raw;
        for (int nd = 1; nd <= 3; nd++) {                  // kit arrays have 1 to 3 axes
            any.assign(nd, -1);
            if (npy::read(dir + "/" + name + ".npy", descr, any, raw, shape, err)) {
                return std::vector<i64>(raw.begin(), raw.end());
            }
        }
        std::fprintf(stderr, "npy: %s/%s.npy: %s\n", dir.c_str(), name.c_str(), err.c_str());
        std::exit(2);
    }
};

static long g_values = 0;

static bool check(const Case& c, const std::vector<i64>& got, const std::vector<i64>& want) {
    if (got.size() != want.size()) {
        std::printf("FAIL %s: %zu values, expected %zu\n", c.dir.c_str(), got.size(), want.size());
        return false;
    }
    for (size_t i = 0; i < got.size(); i++) {
        if (got[i] != want[i]) {
            std::printf("FAIL %s: value %zu is %lld, expected %lld\n", c.dir.c_str(), i, (long long)got[i],
                        (long long)want[i]);
            return false;
        }
    }
    g_values += long(got.size());
    return true;
}

// ---- replays: each returns true when every value matches ----
static bool primitive(const Case& c, const std::string& op) {
    std::vector<long> s;
    std::vector<i64> got;
    if (op == "rne_shift" || op == "shift_round") {
        const std::vector<i64> x = c.load<int64_t>("x", "<i8", s), n = c.load<int64_t>("n", "<i8", s);
        for (size_t i = 0; i < x.size(); i++)
            got.push_back(op == "rne_shift" ? rne_shift(x[i], int(n[i])) : shift_round(x[i], int(n[i])));
        return check(c, got, c.load<int64_t>("y", "<i8", s));
    }
    if (op == "rne_div") {
        const std::vector<i64> a = c.load<int64_t>("num", "<i8", s), d = c.load<int64_t>("den", "<i8", s);
        for (size_t i = 0; i < a.size(); i++) got.push_back(rne_div(a[i], d[i]));
        return check(c, got, c.load<int64_t>("q", "<i8", s));
    }
    // requantize
    const std::vector<i64> acc = c.load<int64_t>("acc", "<i8", s), m0 = c.load<int64_t>("m0", "<i8", s),
                           sh = c.load<int64_t>("shift", "<i8", s), zp = c.load<int64_t>("zp", "<i8", s);
    for (size_t i = 0; i < acc.size(); i++) got.push_back(requantize8(acc[i], m0[i], int(sh[i]), zp[i]));
    return check(c, got, c.load<int64_t>("y", "<i8", s));
}

static bool scan16(const Case& c) {                       // spec 2.7
    std::vector<long> s;
    const std::vector<i64> lam = c.load<int16_t>("lam", "<i2", s), u = c.load<int16_t>("u", "<i2", s);
    const long n_b = s[0], n_e = s[1], n_t = s[2];
    const int f_l = int(c.param("lam_frac")), u_shift = int(c.param("u_shift"));
    std::vector<i64> got(lam.size());
    for (long b = 0; b < n_b; b++)
        for (long e = 0; e < n_e; e++) {
            i64 state = 0;
            for (long t = 0; t < n_t; t++) {
                const long k = (b * n_e + e) * n_t + t;
                const i64 acc = lam[k] * state + ((i64(1) << f_l) - lam[k]) * shift_round(u[k], u_shift);
                state = sat(rne_shift(acc, f_l), 16);
                got[k] = state;
            }
        }
    return check(c, got, c.load<int16_t>("y", "<i2", s));
}

static bool scan8(const Case& c) {                        // spec 3.6
    std::vector<long> s;
    const std::vector<i64> lam = c.load<int8_t>("lam", "|i1", s), u = c.load<int8_t>("u", "|i1", s);
    const long n_b = s[0], n_e = s[1], n_t = s[2];
    std::vector<i64> got(lam.size());
    for (long b = 0; b < n_b; b++)
        for (long e = 0; e < n_e; e++) {
            i64 state = 0;                                // S_{-1} = 0, never saturated
            for (long t = 0; t < n_t; t++) {
                const long k = (b * n_e + e) * n_t + t;
                const i64 lam_i = lam[k] + 128, u_c = u[k] - c.param("u_zp");
                state = rne_shift(lam_i * state + (256 - lam_i) * (u_c * 256), 8);
                got[k] = requantize8(state, c.param("m0"), int(c.param("shift")), c.param("y_zp"));
            }
        }
    return check(c, got, c.load<int8_t>("y", "|i1", s));
}

static bool lut(const Case& c, const std::string& precision, const std::string& op) {   // 2.5/2.6, 3.5
    std::vector<long> s, ts;
    std::vector<i64> got;
    if (precision == "int8") {
        const std::vector<i64> x = c.load<int8_t>("x", "|i1", s), table = c.load<int8_t>("table", "|i1", ts);
        for (size_t i = 0; i < x.size(); i++) got.push_back(table[size_t(x[i] + 128)]);
        return check(c, got, c.load<int8_t>("y", "|i1", s));
    }
    const std::vector<i64> x = c.load<int16_t>("x", "<i2", s), table = c.load<int16_t>("table", "<i2", ts);
    const int addr_shift = int(c.param("addr_shift")), identity_shift = int(c.param("identity_shift"));
    for (size_t i = 0; i < x.size(); i++) {
        const i64 a = shift_round(x[i], addr_shift) + 2048;
        if (op == "silu" && a > 4095) {
            got.push_back(sat(shift_round(x[i], identity_shift), 16));      // x >= 8: identity
        } else {
            got.push_back(table[size_t(a < 0 ? 0 : (a > 4095 ? 4095 : a))]);
        }
    }
    return check(c, got, c.load<int16_t>("y", "<i2", s));
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s KIT_DIR   (e.g. tests/spec_vectors)\n", argv[0]);
        return 2;
    }
    const std::string kit = argv[1];
    std::ifstream list((kit + "/cases.txt").c_str());
    if (!list) {
        std::fprintf(stderr, "replay: cannot read %s/cases.txt\n", kit.c_str());
        return 2;
    }
    int replayed = 0, skipped = 0, failed = 0;
    std::string line;
    while (std::getline(list, line)) {
        std::istringstream fields(line);
        std::string id, precision, op;
        if (!(fields >> id >> precision >> op)) continue;
        Case c;
        c.dir = kit + "/" + id;
        std::ifstream params((c.dir + "/params.txt").c_str());
        std::string key;
        long long value;
        while (params >> key >> value) c.p[key] = value;
        bool ok;
        if (precision == "primitive" && (op == "rne_shift" || op == "shift_round" || op == "rne_div" ||
                                         op == "requantize")) {
            ok = primitive(c, op);
        } else if (op == "scan" && (precision == "int16" || precision == "int8")) {
            ok = precision == "int16" ? scan16(c) : scan8(c);
        } else if ((op == "sigmoid" || op == "silu") && (precision == "int16" || precision == "int8")) {
            ok = lut(c, precision, op);
        } else {
            skipped++;
            continue;
        }
        replayed++;
        failed += ok ? 0 : 1;
    }
    std::printf("replay: %d cases, %ld values, %s (%d cases of other operators skipped)\n", replayed, g_values,
                failed ? "MISMATCH" : "all equal", skipped);
    return failed || replayed == 0 ? 1 : 0;
}
