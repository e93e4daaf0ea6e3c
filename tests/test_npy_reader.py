"""hls_tb/npy.h, the testbenches' NPY reader/writer: good files load exactly; a wrong magic,
version, dtype, fortran order, shape, a truncated or over-long file each give one clear
message and exit status 2 (never garbage); the writer round-trips through numpy."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from codegen.project import NPY_HEADER
from tests.cpp_harness import compile_program

DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
#include "npy.h"
// usage: npy_driver load PATH DESCR D0 D1 ...   (-1 = any): prints "ok shape=... sum=... first=..."
//        npy_driver save PATH                   writes int16 [2, 3] = 0, -1, 2, -3, 32767, -32768
template<typename T> static int load(const std::string& path, const std::string& descr, const std::vector<long>& want) {
    std::vector<long> shape;
    const std::vector<T> v = npy::load_or_exit<T>(path, descr, want, shape);
    long long sum = 0;
    for (size_t i = 0; i < v.size(); i++) sum += v[i];
    std::printf("ok shape=%s sum=%lld first=%lld\n", npy::shape_str(shape).c_str(), sum,
                v.empty() ? 0LL : (long long)v[0]);
    return 0;
}
int main(int argc, char** argv) {
    const std::string mode = argv[1], path = argv[2];
    if (mode == "save") {
        std::string err;
        const std::vector<int16_t> data = {0, -1, 2, -3, 32767, -32768};
        return npy::save(path, "<i2", {2, 3}, data, err) ? 0 : 3;
    }
    const std::string descr = argv[3];
    std::vector<long> want;
    for (int i = 4; i < argc; i++) want.push_back(std::atol(argv[i]));
    return descr == "|i1" ? load<int8_t>(path, descr, want) : load<int16_t>(path, descr, want);
}
"""


@pytest.fixture(scope="module")
def driver():
    return compile_program({"npy.h": NPY_HEADER.read_text(), "driver.cpp": DRIVER}, name="npy_driver")


def run(driver, *args):
    return subprocess.run([str(driver), *map(str, args)], capture_output=True, text=True)


def good(tmp_path, arr=None, name="a.npy", version=None):
    arr = np.arange(-12, 12, dtype=np.int16).reshape(2, 3, 4) if arr is None else arr
    path = tmp_path / name
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, arr, version=version, allow_pickle=False)
    return path, arr


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_reads_int16_every_format_version(driver, tmp_path, version):
    path, arr = good(tmp_path, version=version)
    p = run(driver, "load", path, "<i2", 2, 3, 4)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"ok shape=(2, 3, 4) sum={int(arr.sum())} first=-12"


def test_reads_int8_and_wildcard_axis(driver, tmp_path):
    path, arr = good(tmp_path, np.array([[-128, 127, 5]], np.int8))
    p = run(driver, "load", path, "|i1", -1, 3)
    assert p.returncode == 0 and p.stdout.strip() == "ok shape=(1, 3) sum=4 first=-128"


def check_error(p, path, message):
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.strip() == f"npy: {path}: {message}"


def test_wrong_magic(driver, tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 60)
    check_error(run(driver, "load", path, "<i2", 2), path, "not an NPY file (bad magic; expected \\x93NUMPY)")


def test_unsupported_version(driver, tmp_path):
    path, _ = good(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[6] = 9
    path.write_bytes(bytes(raw))
    check_error(run(driver, "load", path, "<i2", 2, 3, 4), path, "unsupported NPY format version 9.0")


def test_wrong_dtype(driver, tmp_path):
    path, _ = good(tmp_path, np.zeros((2, 3, 4), np.int32))
    check_error(run(driver, "load", path, "<i2", 2, 3, 4), path, "dtype '<i4', expected '<i2'")
    path, _ = good(tmp_path, np.zeros((2, 3, 4), ">i2"), name="be.npy")
    check_error(run(driver, "load", path, "<i2", 2, 3, 4), path, "dtype '>i2', expected '<i2'")


def test_wrong_shape(driver, tmp_path):
    path, _ = good(tmp_path)
    check_error(run(driver, "load", path, "<i2", 2, 4, 3), path, "shape (2, 3, 4), expected (2, 4, 3)")
    check_error(run(driver, "load", path, "<i2", -1, 12), path, "shape (2, 3, 4), expected (N, 12)")


def test_fortran_order(driver, tmp_path):
    path, _ = good(tmp_path, np.asfortranarray(np.zeros((2, 3), np.int16)))
    check_error(run(driver, "load", path, "<i2", 2, 3), path, "fortran_order is True, expected False (C order)")


def test_truncated_data_and_trailing_bytes(driver, tmp_path):
    path, _ = good(tmp_path)
    full = path.read_bytes()
    path.write_bytes(full[:-5])
    check_error(
        run(driver, "load", path, "<i2", 2, 3, 4), path, "truncated data: 43 bytes, expected 48 for shape (2, 3, 4)"
    )
    path.write_bytes(full + b"\0\0")
    check_error(
        run(driver, "load", path, "<i2", 2, 3, 4),
        path,
        "trailing bytes after the data: 50 bytes, expected 48 for shape (2, 3, 4)",
    )


def test_truncated_header_and_missing_file(driver, tmp_path):
    path, _ = good(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    check_error(run(driver, "load", path, "<i2", 2, 3, 4), path, "truncated header")
    missing = tmp_path / "missing.npy"
    check_error(run(driver, "load", missing, "<i2", 1), missing, "cannot open file")


def test_writer_round_trips_through_numpy(driver, tmp_path):
    path = tmp_path / "w.npy"
    assert run(driver, "save", path).returncode == 0
    arr = np.load(path, allow_pickle=False)
    assert arr.dtype == np.dtype("<i2") and arr.shape == (2, 3)
    assert arr.ravel().tolist() == [0, -1, 2, -3, 32767, -32768]
    assert len(path.read_bytes()) % 64 == 12  # header padded to 64 bytes, then 12 data bytes
