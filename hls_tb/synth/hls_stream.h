// hls_stream.h: the SYNTHESIS VIEW of hls::stream, for the synthesizability check only
// (codegen/synth_check.py puts this folder first on its include path; nothing else uses it).
//
// The testbench builds with the real header, Xilinx's C-simulation model of hls::stream from
// the same ap types package as ap_int.h (hls4ml 1.3.0's copy; `make install-test` extracts it
// to .venv/ap_types). That model is a std::deque with a std::string name and a typeid-based
// default name: it needs libstdc++ and RTTI, which the check forbids (-nostdinc++ for stdint,
// -fno-rtti always). Vitis replaces it when it synthesizes: a channel read or write becomes
// a FIFO port operation, not a function. This view therefore only DECLARES the channel
// operations (no body, no data); the check accepts calls to them and their undefined symbols
// as channel operations and checks everything else as firmware.
#ifndef CMAMBA_SYNTH_VIEW_HLS_STREAM_H
#define CMAMBA_SYNTH_VIEW_HLS_STREAM_H

namespace hls {

template<typename T>
class stream {
  public:
    stream();
    explicit stream(const char* name);
    T read();
    void read(T& value);
    bool read_nb(T& value);
    void write(const T& value);
    bool write_nb(const T& value);
    bool empty();
    bool full();

  private:
    stream(const stream&);               // a channel is never copied
    stream& operator=(const stream&);
};

}  // namespace hls

#endif  // CMAMBA_SYNTH_VIEW_HLS_STREAM_H
