// ggml's own quantizers and dequantizers, called from node-llama-cpp's prebuilt libggml-base (the
// library llama.cpp loads models with), as the oracle of test/29.gguf.quantized for lib/gguf/quantize.ts.
//   ggmlQuantOracle q4_0|q8_0 values.f32 blocks.bin ggml-blocks.out ggml-values.out
//     ggml-blocks.out: quantize_row_<type>_ref(values); ggml-values.out: dequantize_row_<type>(blocks.bin)
//   ggmlQuantOracle fp16 values.f32 halves.out      ggml_fp32_to_fp16 of each value
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

extern "C" {
void quantize_row_q4_0_ref(const float* x, void* y, int64_t k);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t k);
void dequantize_row_q4_0(const void* x, float* y, int64_t k);
void dequantize_row_q8_0(const void* x, float* y, int64_t k);
uint16_t ggml_fp32_to_fp16(float x);
}

static std::vector<char> ReadAll(const char* file) {
    std::vector<char> data;
    FILE* f = std::fopen(file, "rb");
    if (f == nullptr) return data;
    char buffer[65536];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) data.insert(data.end(), buffer, buffer + n);
    std::fclose(f);
    return data;
}

static bool WriteAll(const char* file, const void* data, size_t bytes) {
    FILE* f = std::fopen(file, "wb");
    if (f == nullptr) return false;
    const bool ok = std::fwrite(data, 1, bytes, f) == bytes;
    return std::fclose(f) == 0 && ok;
}

int main(int argc, char** argv) {
    if (argc < 4) return 2;
    const std::vector<char> raw = ReadAll(argv[2]);
    const size_t n = raw.size() / sizeof(float);
    std::vector<float> values(n);
    std::memcpy(values.data(), raw.data(), n * sizeof(float));
    if (std::strcmp(argv[1], "fp16") == 0) {
        std::vector<uint16_t> halves(n);
        for (size_t i = 0; i < n; ++i) halves[i] = ggml_fp32_to_fp16(values[i]);
        return WriteAll(argv[3], halves.data(), n * 2) ? 0 : 1;
    }
    if (argc < 6 || n % 32 != 0) return 2;
    const bool q4 = std::strcmp(argv[1], "q4_0") == 0;
    const size_t blockBytes = q4 ? 18 : 34;
    std::vector<unsigned char> blocks(n / 32 * blockBytes);
    if (q4) quantize_row_q4_0_ref(values.data(), blocks.data(), static_cast<int64_t>(n));
    else quantize_row_q8_0_ref(values.data(), blocks.data(), static_cast<int64_t>(n));
    const std::vector<char> theirs = ReadAll(argv[3]);
    const size_t m = theirs.size() / blockBytes * 32;
    std::vector<float> decoded(m);
    if (q4) dequantize_row_q4_0(theirs.data(), decoded.data(), static_cast<int64_t>(m));
    else dequantize_row_q8_0(theirs.data(), decoded.data(), static_cast<int64_t>(m));
    return WriteAll(argv[4], blocks.data(), blocks.size()) && WriteAll(argv[5], decoded.data(), m * sizeof(float)) ? 0 : 1;
}
