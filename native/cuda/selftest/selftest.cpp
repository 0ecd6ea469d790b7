// selfrag_cuda_selftest: the CUDA kernels against the CPU implementation, without Node or a model.
// Runs the reflection extraction (reflection_kernel.cu) on random and adversarial rows (NaN,
// +-Infinity, -1e30, FLT_MAX, ties, offsets of -1e4 and +80; vocabularies of 32,016 and 128,256;
// 1 to 512 rows per launch) and the segment scorer (segment_scorer.cu) on random and adversarial
// candidates, and compares every output with the CPU kernel (reflection_kernel.cpp, scalar and the
// vectorised paths this CPU can run: AVX2, AVX-512) and the CPU scorer (segment_scorer.cpp). Prints one line.
//
//   selfrag_cuda_selftest [--backend auto|device|host-replay] [--inject-fault argmax|logprob|status|score]
//                         [--build-seconds S] [--quick]
//
// Backends: `device` runs the kernels on CUDA device 0; `host-replay` runs the same device code
// built by the host compiler in the kernel's reduction order (host_replay.h), which is how this
// program's comparison logic runs where there is no GPU (test/cuda-host/03-selftest.test.ts);
// `auto` (default) is the device when there is one, else the host replay, and says there is none.
// --inject-fault corrupts one kernel output so a test can see the comparison catch it.
// Exit status: 0 every comparison held (or no device, after the host replay held), 1 a mismatch,
// 2 a usage or CUDA error.
//
// Tolerances (stated in the output line): extraction log-probs and logsumexps within 2e-5 + 2 float
// ulps of the CPU's value (the CPU's vector paths sum in float, the kernel in double, in another
// order); argmax, status, first-NaN index and +Infinity count exactly; NaN where the CPU has NaN and
// the same infinity where it has one. Scores within 1e-12 relative (+1e-12 absolute): both sides run
// critique_math.h in double, so only libm's and the device's exp() may differ, in the last bits.
#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../../reflection_kernel.h"
#include "../../segment_scorer.h"
#include "../cuda_kernels.h"
#include "../host_replay.h"

namespace {

using selfrag::ScoreWeights;
namespace hd = selfrag::hd;
namespace cuda = selfrag::cuda;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kAbsTolerance = 2e-5;
constexpr double kUlpTolerance = 2;
constexpr double kScoreTolerance = 1e-12;
constexpr int32_t kScoreIds = 15;  // reflection row width the scorer reads (the addon's)

// splitmix64: deterministic, fast, the same on every platform.
struct Rng {
    uint64_t state;
    explicit Rng(uint64_t seed) : state(seed) {}
    uint64_t Next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double Unit() { return static_cast<double>(Next() >> 11) * (1.0 / 9007199254740992.0); }
    float Uniform(float lo, float hi) { return lo + static_cast<float>(Unit()) * (hi - lo); }
    int32_t Below(int64_t n) { return static_cast<int32_t>(Next() % static_cast<uint64_t>(n)); }
};

// ---- extraction cases -------------------------------------------------------------------------

enum RowKind {
    kRandom, kPeaked, kOneNaN, kNaNFirstLast, kNaNAndPosInf, kOnePosInf, kThreePosInf, kPosInfAndNegInf, kAllNegInf,
    kNegInfButOne, kHalfNegInf, kAllMinus1e30, kMinus1e30ButOne, kMinus1e30Mixed, kTies, kAllEqual, kOffsetMinus1e4,
    kOffsetPlus80, kFltMax, kDenormals, kMaxAtEnds, kRowKinds
};

const char* KindName(int kind) {
    static const char* names[kRowKinds] = {
        "random", "peaked", "one NaN", "NaN first and last", "NaN and +Inf", "one +Inf at a reflection id", "three +Inf",
        "+Inf among -Inf", "all -Inf", "all -Inf but one", "half -Inf", "all -1e30", "all -1e30 but one", "-1e30/-Inf/random",
        "tied maxima", "all equal", "offset -1e4", "offset +80", "FLT_MAX and -FLT_MAX", "denormals", "maximum first and last"};
    return kind >= 0 && kind < kRowKinds ? names[kind] : "?";
}

void FillRow(float* x, int32_t n, int kind, Rng& rng, const std::vector<int32_t>& ids) {
    auto random = [&](float scale) {
        for (int32_t i = 0; i < n; ++i) x[i] = rng.Uniform(-scale, scale);
    };
    auto fill = [&](float v) { std::fill(x, x + n, v); };
    auto anId = [&]() {  // a reflection id inside the vocabulary
        for (;;) {
            const int32_t id = ids[static_cast<size_t>(rng.Below(static_cast<int64_t>(ids.size())))];
            if (id >= 0 && id < n) return id;
        }
    };
    switch (kind) {
        case kRandom: random(4); break;
        case kPeaked: random(4); x[rng.Below(n)] += 30; break;
        case kOneNaN: random(4); x[rng.Below(n)] = kNaN; break;
        case kNaNFirstLast: random(4); x[0] = kNaN; x[n - 1] = kNaN; break;
        case kNaNAndPosInf: random(4); x[rng.Below(n / 2)] = kInf; x[n / 2 + rng.Below(n / 2)] = kNaN; break;
        case kOnePosInf: random(4); x[anId()] = kInf; break;
        case kThreePosInf: random(4); x[anId()] = kInf; x[rng.Below(n)] = kInf; x[rng.Below(n)] = kInf; break;
        case kPosInfAndNegInf:
            fill(-kInf);
            x[rng.Below(n)] = kInf;
            x[anId()] = kInf;
            x[rng.Below(n)] = 3.0f;
            break;
        case kAllNegInf: fill(-kInf); break;
        case kNegInfButOne: fill(-kInf); x[rng.Below(n)] = rng.Uniform(-50, 50); break;
        case kHalfNegInf:
            random(4);
            for (int32_t i = 0; i < n; i += 2) x[i] = -kInf;
            break;
        case kAllMinus1e30: fill(-1e30f); break;
        case kMinus1e30ButOne: fill(-1e30f); x[anId()] = 0.0f; break;
        case kMinus1e30Mixed:
            for (int32_t i = 0; i < n; ++i) {
                const int32_t pick = rng.Below(3);
                x[i] = pick == 0 ? -1e30f : pick == 1 ? -kInf : rng.Uniform(-4, 4);
            }
            break;
        case kTies:
            random(4);
            for (int k = 0; k < 5; ++k) x[rng.Below(n)] = 7.0f;
            x[anId()] = 7.0f;
            break;
        case kAllEqual: fill(0.25f); break;
        case kOffsetMinus1e4:
            for (int32_t i = 0; i < n; ++i) x[i] = rng.Uniform(-4, 4) - 1e4f;
            break;
        case kOffsetPlus80:
            for (int32_t i = 0; i < n; ++i) x[i] = rng.Uniform(-4, 4) + 80.0f;
            break;
        case kFltMax:
            random(4);
            x[rng.Below(n)] = FLT_MAX;
            x[anId()] = -FLT_MAX;
            x[rng.Below(n)] = -FLT_MAX;
            break;
        case kDenormals:
            for (int32_t i = 0; i < n; ++i) x[i] = rng.Uniform(-1, 1) * 1e-40f;
            break;
        case kMaxAtEnds: random(4); x[0] = 9.0f; x[n - 1] = 9.0f; break;
        default: break;
    }
}

struct ExtractCase {
    std::string name;
    int32_t vocab;
    int64_t rows;
    int kind;  // every row of this kind, or -1: row r is of kind r % kRowKinds (adversarial mix)
    uint64_t seed;
};

// Reflection ids: the 16 Self-RAG tokens as the released models place them (the last 16 of a
// 32,016 vocabulary; for 128,256 the last 16 too), the first and last token, and two out of the
// vocabulary (their log-prob is -Infinity by definition).
std::vector<int32_t> IdsFor(int32_t vocab) {
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < 16; ++i) ids.push_back(vocab - 16 + i);
    ids.push_back(0);
    ids.push_back(vocab - 1);
    ids.push_back(vocab);
    ids.push_back(-1);
    return ids;
}

std::vector<ExtractCase> ExtractCases(bool quick) {
    std::vector<ExtractCase> cases;
    uint64_t seed = 1;
    for (const int32_t vocab : {32016, 128256}) {
        const std::string v = std::to_string(vocab);
        for (int kind = 0; kind < kRowKinds; ++kind) {
            cases.push_back({std::string(KindName(kind)) + ", 1 row of " + v, vocab, 1, kind, seed++});
        }
        for (const int64_t rows : {2, 8, 33, 512}) {
            if (quick && vocab > 32016 && rows > 33) continue;
            cases.push_back({"random, " + std::to_string(rows) + " rows of " + v, vocab, rows, kRandom, seed++});
            cases.push_back({"adversarial mix, " + std::to_string(rows) + " rows of " + v, vocab, rows, -1, seed++});
        }
        cases.push_back({"peaked, 64 rows of " + v, vocab, 64, kPeaked, seed++});
    }
    return cases;
}

// ---- comparison -------------------------------------------------------------------------------

struct Report {
    int64_t comparisons = 0;
    int64_t mismatches = 0;
    std::string first;          // the first mismatch, described
    double worstExtract = 0;    // largest |kernel - CPU| among finite extraction values
    double worstScore = 0;      // largest relative score difference
    void Fail(const std::string& what) {
        if (mismatches++ == 0) first = what;
    }
};

double Ulp(float x) {
    const float a = std::fabs(x);
    return static_cast<double>(std::nextafter(a, kInf) - a);
}

std::string Num(double x) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.9g", x);
    return buffer;
}

// One extraction value: the kernel's `got` against the CPU's `want`.
void CheckValue(Report& report, const std::string& where, float got, float want) {
    ++report.comparisons;
    if (std::isnan(want) || std::isinf(want)) {
        const bool same = std::isnan(want) ? std::isnan(got) : got == want;
        if (!same) report.Fail(where + ": " + Num(got) + " vs CPU " + Num(want));
        return;
    }
    const double diff = std::fabs(static_cast<double>(got) - static_cast<double>(want));
    if (!(diff <= kAbsTolerance + kUlpTolerance * Ulp(want))) {
        report.Fail(where + ": " + Num(got) + " vs CPU " + Num(want));
        return;
    }
    report.worstExtract = std::max(report.worstExtract, diff);
}

void CheckExact(Report& report, const std::string& where, int64_t got, int64_t want) {
    ++report.comparisons;
    if (got != want) report.Fail(where + ": " + std::to_string(got) + " vs CPU " + std::to_string(want));
}

struct KernelSide {
    const char* label;
    bool device;
};

std::string Extract(const KernelSide& side, const float* logits, int64_t rows, int32_t vocab, const int32_t* ids, int32_t nIds,
                    int32_t* argmax, float* argmaxLogprob, float* logSumExp, float* idLogprobs, int64_t* badRow,
                    hd::RowResult* bad, hd::RowResult* perRow) {
    if (side.device) {
        return cuda::ExtractRowsFromHost(logits, rows, vocab, ids, nIds, argmax, argmaxLogprob, logSumExp, idLogprobs, badRow, bad,
                                         perRow);
    }
    return cuda::ReplayExtractRows(logits, rows, vocab, ids, nIds, argmax, argmaxLogprob, logSumExp, idLogprobs, badRow, bad,
                                   perRow);
}

// Runs one case on the kernel side and on the CPU, compares; returns a CUDA error or "".
std::string RunExtractCase(const KernelSide& side, const ExtractCase& c, const std::string& fault, bool* faultUsed, Report& report) {
    const std::vector<int32_t> ids = IdsFor(c.vocab);
    const int32_t nIds = static_cast<int32_t>(ids.size());
    const size_t rows = static_cast<size_t>(c.rows);
    std::vector<float> logits(rows * static_cast<size_t>(c.vocab));
    std::vector<int> kinds(rows);
    Rng rng(c.seed);
    for (size_t r = 0; r < rows; ++r) {
        kinds[r] = c.kind >= 0 ? c.kind : static_cast<int>(r % kRowKinds);
        FillRow(logits.data() + r * static_cast<size_t>(c.vocab), c.vocab, kinds[r], rng, ids);
    }

    std::vector<int32_t> kArgmax(rows);
    std::vector<float> kArgmaxLp(rows), kLse(rows), kIds(rows * static_cast<size_t>(nIds));
    std::vector<hd::RowResult> kPerRow(rows);
    int64_t kBadRow = -1;
    hd::RowResult kBad{};
    const std::string error = Extract(side, logits.data(), c.rows, c.vocab, ids.data(), nIds, kArgmax.data(), kArgmaxLp.data(),
                                      kLse.data(), kIds.data(), &kBadRow, &kBad, kPerRow.data());
    if (!error.empty()) return error;
    if (!*faultUsed && !fault.empty()) {
        // Corrupt the first valid row's output (or its status) the way a broken kernel would.
        for (size_t r = 0; r < rows && !*faultUsed; ++r) {
            if (kPerRow[r].status != hd::kStatusOk || kPerRow[r].posInf != 0) continue;
            if (fault == "argmax") kArgmax[r] = (kArgmax[r] + 1) % c.vocab;
            else if (fault == "logprob") kIds[r * static_cast<size_t>(nIds)] += 1e-4f;
            else if (fault == "status") kPerRow[r].status = hd::kStatusNaN;
            else continue;
            *faultUsed = true;
        }
    }

    for (const std::string isa : {"scalar", "avx2", "avx512f"}) {  // every path this CPU can run
        std::vector<int32_t> argmax(rows);
        std::vector<float> argmaxLp(rows), lse(rows), lps(rows * static_cast<size_t>(nIds));
        const selfrag::ExtractStatus status = selfrag::ExtractReflectionRowsWith(
            isa.c_str(), logits.data(), c.rows, c.vocab, ids.data(), nIds, argmax.data(), argmaxLp.data(), lse.data(), lps.data(), 1);
        if (!status.ran) continue;
        const std::string prefix = "case \"" + c.name + "\" vs CPU " + isa;
        CheckExact(report, prefix + ": first invalid row", kBadRow, status.badRow);
        if (status.badRow >= 0 && kBadRow == status.badRow) {
            CheckExact(report, prefix + ": first invalid row's status", kBad.status, status.badSummary.status);
            CheckExact(report, prefix + ": first invalid row's NaN index", kBad.badIndex, status.badSummary.badIndex);
        }
        for (size_t r = 0; r < rows; ++r) {
            const std::string where = prefix + ", row " + std::to_string(r) + " (" + KindName(kinds[r]) + ")";
            CheckExact(report, where + " argmax", kArgmax[r], argmax[r]);
            CheckValue(report, where + " argmax log-prob", kArgmaxLp[r], argmaxLp[r]);
            CheckValue(report, where + " logsumexp", kLse[r], lse[r]);
            for (int32_t k = 0; k < nIds; ++k) {
                const size_t at = r * static_cast<size_t>(nIds) + static_cast<size_t>(k);
                CheckValue(report, where + " log-prob of id " + std::to_string(ids[static_cast<size_t>(k)]), kIds[at], lps[at]);
            }
        }
    }
    // Per-row facts against the CPU's row summary (the dispatched kernel; invalid and +Infinity
    // rows are summarised by one routine on every CPU path).
    for (size_t r = 0; r < rows; ++r) {
        const selfrag::RowSummary s = selfrag::SummariseRow(logits.data() + r * static_cast<size_t>(c.vocab), c.vocab);
        const std::string where = "case \"" + c.name + "\", row " + std::to_string(r) + " (" + KindName(kinds[r]) + ")";
        CheckExact(report, where + " status", kPerRow[r].status, s.status);
        CheckExact(report, where + " first NaN index", kPerRow[r].badIndex, s.badIndex);
        CheckExact(report, where + " +Infinity count", kPerRow[r].posInf, s.posInf);
    }
    return std::string();
}

// ---- scoring cases ----------------------------------------------------------------------------

struct ScoreCase {
    std::string name;
    int32_t candidates;
    int32_t maxTokens;
    bool adversarial;
    ScoreWeights weights;
    uint64_t seed;
};

std::vector<ScoreCase> ScoreCases() {
    ScoreWeights paper;
    ScoreWeights noSequence;
    noSequence.useSequenceScore = false;
    noSequence.referenceLongFormUtility = true;
    ScoreWeights custom;
    custom.relevance = 0.3;
    custom.support = 2.0;
    custom.utility = 1.5;
    return {
        {"1 candidate", 1, 16, false, paper, 101},
        {"random, 200 candidates", 200, 48, false, paper, 102},
        {"random, 4096 candidates", 4096, 64, false, custom, 103},
        {"adversarial, 1 candidate", 1, 16, true, paper, 104},
        {"adversarial, 500 candidates", 500, 64, true, paper, 105},
        {"adversarial, 500 candidates, reference long-form utility, no sequence score", 500, 64, true, noSequence, 106},
        {"adversarial, 3000 candidates, custom weights", 3000, 32, true, custom, 107},
    };
}

float AdversarialLogprob(Rng& rng, float typical) {
    switch (rng.Below(8)) {
        case 0: return -kInf;
        case 1: return -1e30f;
        case 2: return rng.Uniform(-4, 0) - 1e4f;
        case 3: return -FLT_MAX;
        case 4: return rng.Below(50) == 0 ? kNaN : 0.0f;
        default: return typical;
    }
}

std::string RunScoreCase(const KernelSide& side, const ScoreCase& c, const std::string& fault, bool* faultUsed, Report& report) {
    Rng rng(c.seed);
    std::vector<int32_t> reflectionIds(kScoreIds);
    for (int32_t i = 0; i < kScoreIds; ++i) reflectionIds[static_cast<size_t>(i)] = 32000 + i;
    std::vector<int32_t> offsets(static_cast<size_t>(c.candidates) + 1, 0);
    for (int32_t i = 0; i < c.candidates; ++i) {
        // Empty candidates too: the scorer defines their sequence score and critique as 0.
        offsets[static_cast<size_t>(i) + 1] = offsets[static_cast<size_t>(i)] + rng.Below(c.maxTokens + 1);
    }
    const size_t total = static_cast<size_t>(offsets.back());
    std::vector<int32_t> tokens(total);
    std::vector<float> logprobs(total), reflection(total * kScoreIds);
    for (size_t t = 0; t < total; ++t) {
        const int32_t pick = rng.Below(10);
        // Mostly words, some isSup (32012..32014) and isUse (32007..32011) tokens, some other reflection tokens.
        tokens[t] = pick < 6 ? rng.Below(32000) : pick < 8 ? 32012 + rng.Below(3) : pick < 9 ? 32007 + rng.Below(5) : 32000 + rng.Below(7);
        const float lp = rng.Uniform(-8, 0);
        logprobs[t] = c.adversarial && rng.Below(10) == 0 ? AdversarialLogprob(rng, lp) : lp;
        for (int32_t k = 0; k < kScoreIds; ++k) {
            const float r = rng.Uniform(-20, 0);
            reflection[t * kScoreIds + static_cast<size_t>(k)] = c.adversarial && rng.Below(4) == 0 ? AdversarialLogprob(rng, r) : r;
        }
        if (c.adversarial && rng.Below(20) == 0) {  // a whole reflection row of -Infinity: no share exists, the term is 0
            std::fill(reflection.begin() + static_cast<std::ptrdiff_t>(t * kScoreIds),
                      reflection.begin() + static_cast<std::ptrdiff_t>((t + 1) * kScoreIds), -kInf);
        }
    }
    std::vector<double> got(static_cast<size_t>(c.candidates) * 5), want(got.size());
    const std::string error = side.device
        ? cuda::ScoreCandidates(offsets.data(), c.candidates, tokens.data(), logprobs.data(), reflection.data(), reflectionIds.data(),
                                kScoreIds, c.weights, got.data())
        : cuda::ReplayScoreCandidates(offsets.data(), c.candidates, tokens.data(), logprobs.data(), reflection.data(),
                                      reflectionIds.data(), kScoreIds, c.weights, got.data());
    if (!error.empty()) return error;
    if (!*faultUsed && fault == "score") {
        for (double& v : got) {
            if (std::isfinite(v) && v != 0) {
                v *= 1 + 1e-9;
                *faultUsed = true;
                break;
            }
        }
    }
    selfrag::ScoreSegments(offsets.data(), c.candidates, tokens.data(), logprobs.data(), reflection.data(), reflectionIds.data(),
                           kScoreIds, c.weights, want.data());
    static const char* fields[5] = {"score", "relevance", "support", "utility", "sequence"};
    for (size_t i = 0; i < got.size(); ++i) {
        ++report.comparisons;
        const double g = got[i];
        const double w = want[i];
        const std::string where = "case \"" + c.name + "\", candidate " + std::to_string(i / 5) + " " + fields[i % 5];
        if (std::isnan(w) || std::isinf(w)) {
            if (!(std::isnan(w) ? std::isnan(g) : g == w)) report.Fail(where + ": " + Num(g) + " vs CPU " + Num(w));
            continue;
        }
        const double diff = std::fabs(g - w);
        if (!(diff <= kScoreTolerance * (1 + std::fabs(w)))) {
            report.Fail(where + ": " + Num(g) + " vs CPU " + Num(w));
            continue;
        }
        report.worstScore = std::max(report.worstScore, diff / (1 + std::fabs(w)));
    }
    return std::string();
}

// ---- main -------------------------------------------------------------------------------------

struct Options {
    std::string backend = "auto";
    std::string fault;
    double buildSeconds = -1;
    bool quick = false;
};

int Usage(const char* why) {
    std::printf("cuda-selftest: %s; usage: selfrag_cuda_selftest [--backend auto|device|host-replay] "
                "[--inject-fault argmax|logprob|status|score] [--build-seconds S] [--quick]\n", why);
    return 2;
}

std::string Grouped(int64_t n) {
    std::string digits = std::to_string(n);
    for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
    return digits;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (arg == "--backend") {
            const char* v = value();
            if (v == nullptr) return Usage("--backend needs a value");
            options.backend = v;
        } else if (arg == "--inject-fault") {
            const char* v = value();
            if (v == nullptr) return Usage("--inject-fault needs a value");
            options.fault = v;
        } else if (arg == "--build-seconds") {
            const char* v = value();
            if (v == nullptr) return Usage("--build-seconds needs a value");
            options.buildSeconds = std::atof(v);
        } else if (arg == "--quick") {
            options.quick = true;
        } else {
            return Usage(("unknown argument " + arg).c_str());
        }
    }
    if (options.backend != "auto" && options.backend != "device" && options.backend != "host-replay") {
        return Usage(("--backend must be auto, device or host-replay, got " + options.backend).c_str());
    }
    if (!options.fault.empty() && options.fault != "argmax" && options.fault != "logprob" && options.fault != "status" &&
        options.fault != "score") {
        return Usage(("--inject-fault must be argmax, logprob, status or score, got " + options.fault).c_str());
    }

    const cuda::DeviceInfo info = cuda::QueryDevice();
    std::string built = "kernels built for " + info.archs;
    if (options.buildSeconds >= 0) {
        char b[32];
        std::snprintf(b, sizeof b, " in %.0f s", options.buildSeconds);
        built += b;
    }
    // What the line says before PASS/FAIL when the kernels could not run here.
    std::string instead;
    KernelSide side{"the host replay of the device code", false};
    std::string deviceLabel;
    if (!info.built) {
        instead = options.backend == "host-replay" ? "" : "(host build, no CUDA kernels) ";
        if (options.backend == "device") {
            std::printf("cuda-selftest: this build has no CUDA kernels (built by the host compiler): nothing compared\n");
            return 0;
        }
    } else if (options.backend != "host-replay") {
        if (info.available) {
            deviceLabel = info.name + " (sm_" + std::to_string(info.computeMajor) + std::to_string(info.computeMinor) + ")";
            side = KernelSide{deviceLabel.c_str(), true};
        } else if (options.backend == "device") {
            std::printf("cuda-selftest: %s; %s: nothing compared\n", built.c_str(), info.reason.c_str());
            return 0;
        } else {
            // Without a device the line still checks the comparison on the device code's host
            // replay, with the smaller set of cases (the full set runs in npm run test:cuda-host).
            instead = built + "; " + info.reason + "; instead ";
            options.quick = true;
        }
    }

    const auto started = std::chrono::steady_clock::now();
    Report report;
    bool faultUsed = false;
    int64_t rows = 0;
    const std::vector<ExtractCase> extractCases = ExtractCases(options.quick);
    for (const ExtractCase& c : extractCases) {
        const std::string error = RunExtractCase(side, c, options.fault, &faultUsed, report);
        if (!error.empty()) {
            std::printf("cuda-selftest: ERROR on %s, case \"%s\": %s\n", side.label, c.name.c_str(), error.c_str());
            return 2;
        }
        rows += c.rows;
    }
    int64_t candidates = 0;
    const std::vector<ScoreCase> scoreCases = ScoreCases();
    for (const ScoreCase& c : scoreCases) {
        const std::string error = RunScoreCase(side, c, options.fault, &faultUsed, report);
        if (!error.empty()) {
            std::printf("cuda-selftest: ERROR on %s, case \"%s\": %s\n", side.label, c.name.c_str(), error.c_str());
            return 2;
        }
        candidates += c.candidates;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    // The CPU paths compared (ExtractReflectionRowsWith runs an instruction set only where the CPU has it).
    std::string cpu = "scalar";
    for (const char* isa : {"avx2", "avx512f"}) {
        float probe = 0;
        int32_t argmax = 0;
        float lp = 0, lse = 0;
        if (selfrag::ExtractReflectionRowsWith(isa, &probe, 1, 1, nullptr, 0, &argmax, &lp, &lse, &lp, 1).ran) cpu += std::string(", ") + isa;
    }

    const std::string prefix = "cuda-selftest: " + instead;
    if (report.mismatches > 0) {
        std::printf("%sFAIL on %s: %s of %s comparisons differ from the CPU; first: %s\n", prefix.c_str(), side.label,
                    Grouped(report.mismatches).c_str(), Grouped(report.comparisons).c_str(), report.first.c_str());
        return 1;
    }
    std::printf("%sPASS on %s: %zu extraction cases (%s rows; vocabularies 32,016 and 128,256; 1 to 512 rows a launch; random, "
                "NaN, +-Inf, -1e30, FLT_MAX, ties) and %zu scoring cases (%s candidates) agree with the CPU kernel (%s) in "
                "%s comparisons; worst log-prob difference %.2g (tolerance 2e-5 + 2 ulp), worst score difference %.2g (tolerance "
                "1e-12 relative); %s%.1f s\n",
                prefix.c_str(), side.label, extractCases.size(), Grouped(rows).c_str(), scoreCases.size(), Grouped(candidates).c_str(),
                cpu.c_str(), Grouped(report.comparisons).c_str(), report.worstExtract, report.worstScore,
                side.device ? (built + "; ran in ").c_str() : "ran in ", seconds);
    if (!options.fault.empty()) {
        // A fault was asked for and nothing caught it (or there was nowhere to put it): a broken test.
        std::printf("cuda-selftest: the injected %s fault was %s\n", options.fault.c_str(),
                    faultUsed ? "not detected" : "never injected");
        return 1;
    }
    return 0;
}
