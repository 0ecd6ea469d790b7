// The raw llama.h peer of the startup benchmark (bench/startup.bench.ts): what a small C++ program
// on llama.cpp does for one short-form Self-RAG question or one `inspect`, built against the same
// libllama that node-llama-cpp ships (and selfrag's addon links), so the whole-process times compare
// start-up paths, not llama.cpp versions.
//
//   startup-peer ask     MODEL INPUT LIBDIR CTX_PER_SEQ THREADS MAX_NEW_TOKENS
//   startup-peer inspect MODEL INPUT LIBDIR CTX_PER_SEQ THREADS
//
// INPUT holds the texts separated by the byte 0x1e: the prompt, then (ask) the passages, each as
// selfrag formats it. ask: tokenize; decode the prompt once (sequence 0); copy it to one sequence per
// passage (llama_memory_seq_cp); decode the passages in one batch; then greedy steps, one batched
// llama_decode for all live candidates, each row summarised (argmax, log-sum-exp, log-probs of the 16
// Self-RAG tokens) until EOS or MAX_NEW_TOKENS (the first token comes from the passage row, as in
// selfrag). inspect: the prompt, one row, in a context sized to it as `selfrag inspect` sizes its own.
// Context parameters are selfrag's (native/sequence_engine.cpp; SelfRagModel's sizeToPrompt for inspect).
// Prints the result as one JSON line on stdout and phase times on stderr (`peer-phase <phase> <ms since
// main>`: backend, model, context, first-decode = the prompt's row, first-token = the passages' rows,
// generated, done = after everything is freed).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point started = Clock::now();

double SinceStart() {
    return std::chrono::duration<double, std::milli>(Clock::now() - started).count();
}

void Mark(const char* phase) {
    std::fprintf(stderr, "peer-phase %s %.1f\n", phase, SinceStart());
}

[[noreturn]] void Fail(const std::string& message) {
    std::fprintf(stderr, "startup-peer: %s\n", message.c_str());
    std::exit(1);
}

void QuietLog(ggml_log_level level, const char* text, void*) {
    if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

std::vector<std::string> ReadParts(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) Fail("cannot read " + file);
    std::stringstream all;
    all << in.rdbuf();
    std::vector<std::string> parts;
    std::string part;
    for (char c : all.str()) {
        if (c == '\x1e') {
            parts.push_back(part);
            part.clear();
        } else {
            part.push_back(c);
        }
    }
    parts.push_back(part);
    return parts;
}

std::vector<llama_token> Tokenize(const llama_vocab* vocab, const std::string& text, bool bos) {
    std::vector<llama_token> tokens(text.size() + 8);
    int32_t n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                               static_cast<int32_t>(tokens.size()), bos, true);
    if (n < 0) {
        tokens.resize(static_cast<size_t>(-n));
        n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                           static_cast<int32_t>(tokens.size()), bos, true);
    }
    if (n < 0) Fail("tokenize failed");
    tokens.resize(static_cast<size_t>(n));
    return tokens;
}

std::string Detokenize(const llama_vocab* vocab, const std::vector<llama_token>& tokens) {
    std::string text(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(),
                                 static_cast<int32_t>(text.size()), false, true);
    if (n < 0) {
        text.resize(static_cast<size_t>(-n));
        n = llama_detokenize(vocab, tokens.data(), static_cast<int32_t>(tokens.size()), text.data(),
                             static_cast<int32_t>(text.size()), false, true);
    }
    text.resize(static_cast<size_t>(std::max(n, 0)));
    return text;
}

/** One logits row: greedy token, its log-prob and the log-probs of the reflection tokens (a scalar log-softmax). */
struct Row {
    llama_token argmax = 0;
    float logprob = 0;
    std::vector<float> reflection;
};

Row Summarise(const float* logits, int32_t nVocab, const std::vector<llama_token>& reflectionIds) {
    Row row;
    float max = logits[0];
    for (int32_t i = 1; i < nVocab; i++) {
        if (logits[i] > max) {
            max = logits[i];
            row.argmax = i;
        }
    }
    double sum = 0;
    for (int32_t i = 0; i < nVocab; i++) sum += std::exp(static_cast<double>(logits[i] - max));
    const float logSumExp = max + static_cast<float>(std::log(sum));
    row.logprob = max - logSumExp;
    row.reflection.reserve(reflectionIds.size());
    for (llama_token id : reflectionIds) row.reflection.push_back(logits[id] - logSumExp);
    return row;
}

void Add(llama_batch& batch, llama_token token, llama_pos pos, llama_seq_id seq, bool logits) {
    batch.token[batch.n_tokens] = token;
    batch.pos[batch.n_tokens] = pos;
    batch.n_seq_id[batch.n_tokens] = 1;
    batch.seq_id[batch.n_tokens][0] = seq;
    batch.logits[batch.n_tokens] = logits;
    batch.n_tokens++;
}

void Decode(llama_context* ctx, llama_batch& batch) {
    const int32_t status = llama_decode(ctx, batch);
    if (status != 0) Fail("llama_decode returned " + std::to_string(status));
}

std::string JsonString(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 7) Fail("usage: startup-peer ask|inspect MODEL INPUT LIBDIR CTX_PER_SEQ THREADS [MAX_NEW_TOKENS]");
    const std::string mode = argv[1];
    const std::vector<std::string> parts = ReadParts(argv[3]);
    const bool ask = mode == "ask";
    const int32_t ctxPerSeq = std::atoi(argv[5]);
    const int32_t threads = std::atoi(argv[6]);
    const int32_t maxNewTokens = ask && argc > 7 ? std::atoi(argv[7]) : 1;
    const int32_t nSeq = ask ? static_cast<int32_t>(parts.size()) - 1 : 1;
    if (nSeq < 1) Fail("ask needs at least one passage");

    // What node-llama-cpp's addon does at start: quiet logs, load the backends next to libllama.
    llama_log_set(QuietLog, nullptr);
    ggml_backend_load_all_from_path(argv[4]);
    llama_backend_init();
    Mark("backend");

    llama_model_params modelParams = llama_model_default_params();
    modelParams.n_gpu_layers = 0;
    llama_model* model = llama_model_load_from_file(argv[2], modelParams);
    if (model == nullptr) Fail(std::string("cannot load ") + argv[2]);
    const llama_vocab* vocab = llama_model_get_vocab(model);
    const int32_t nVocab = llama_vocab_n_tokens(vocab);
    std::vector<llama_token> reflectionIds;
    for (int32_t i = 0; i < 16; i++) reflectionIds.push_back(32000 + i);
    Mark("model");

    // Contexts sized as `selfrag` sizes them (SelfRagModel's sizeToPrompt / sizeReserve): inspect,
    // the prompt's tokens; ask, per sequence the prompt and the longest passage tokenized together
    // plus MAX_NEW_TOKENS + 16; rounded up to llama.cpp's 256-cell KV padding, at most CTX_PER_SEQ,
    // and the batch at most that.
    const std::vector<llama_token> prompt = Tokenize(vocab, parts[0], true);
    auto fit = [&](size_t tokens) {
        const uint32_t fitted = std::max<uint32_t>(256, (static_cast<uint32_t>(tokens) + 255) / 256 * 256);
        return std::min(static_cast<uint32_t>(ctxPerSeq), fitted);
    };
    uint32_t nCtx = fit(prompt.size());
    if (ask) {
        size_t longest = 1;
        for (size_t i = 2; i < parts.size(); i++) {
            if (parts[i].size() > parts[longest].size()) longest = i;
        }
        nCtx = fit(Tokenize(vocab, parts[0] + parts[longest], true).size() + static_cast<size_t>(maxNewTokens) + 16) *
               static_cast<uint32_t>(nSeq);
    }
    llama_context_params ctxParams = llama_context_default_params();
    ctxParams.n_ctx = nCtx;
    ctxParams.n_seq_max = static_cast<uint32_t>(nSeq);
    ctxParams.n_batch = std::min<uint32_t>(512, nCtx);
    ctxParams.n_ubatch = std::min<uint32_t>(512, nCtx);
    ctxParams.n_threads = threads;
    ctxParams.n_threads_batch = threads;
    ctxParams.kv_unified = true;
    ctxParams.no_perf = true;
    llama_context* ctx = llama_init_from_model(model, ctxParams);
    if (ctx == nullptr) Fail("cannot create the context");
    Mark("context");

    llama_batch batch = llama_batch_init(512 * std::max(nSeq, 1), 0, 1);
    for (size_t i = 0; i < prompt.size(); i++) Add(batch, prompt[i], static_cast<llama_pos>(i), 0, i + 1 == prompt.size());
    Decode(ctx, batch);
    const Row promptRow = Summarise(llama_get_logits_ith(ctx, -1), nVocab, reflectionIds);
    // P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])): the ids are 32001 and 32000.
    const double pRetrieve = 1.0 / (1.0 + std::exp(static_cast<double>(promptRow.reflection[0] - promptRow.reflection[1])));
    Mark("first-decode");
    if (!ask) {
        std::printf("{\"promptTokens\":%zu,\"p_retrieve\":%.6f,\"next\":%d,\"logprob\":%.6f}\n", prompt.size(), pRetrieve,
                    promptRow.argmax, promptRow.logprob);
        llama_batch_free(batch);
        llama_free(ctx);
        llama_model_free(model);
        llama_backend_free();
        Mark("done");
        return 0;
    }

    llama_memory_t memory = llama_get_memory(ctx);
    for (llama_seq_id s = 1; s < nSeq; s++) llama_memory_seq_cp(memory, 0, s, -1, -1);
    std::vector<int32_t> rowOf(static_cast<size_t>(nSeq), -1);
    std::vector<llama_pos> next(static_cast<size_t>(nSeq), static_cast<llama_pos>(prompt.size()));
    std::vector<std::vector<llama_token>> generated(static_cast<size_t>(nSeq));
    std::vector<std::vector<Row>> rows(static_cast<size_t>(nSeq));
    std::vector<bool> live(static_cast<size_t>(nSeq), true);
    auto take = [&](llama_seq_id s) {
        Row row = Summarise(llama_get_logits_ith(ctx, rowOf[s]), nVocab, reflectionIds);
        generated[s].push_back(row.argmax);
        if (llama_vocab_is_eog(vocab, row.argmax) || static_cast<int32_t>(generated[s].size()) >= maxNewTokens) live[s] = false;
        rows[s].push_back(std::move(row));
    };
    // The passages of all sequences in one batch, decoded in n_batch (512) views as selfrag's step
    // loop does with its default stepTokens; each sequence's row is read after the view holding it.
    struct Item { llama_token token; llama_pos pos; llama_seq_id seq; bool last; };
    std::vector<Item> items;
    for (llama_seq_id s = 0; s < nSeq; s++) {
        const std::vector<llama_token> passage = Tokenize(vocab, parts[static_cast<size_t>(s) + 1], false);
        for (size_t i = 0; i < passage.size(); i++) items.push_back({passage[i], next[s]++, s, i + 1 == passage.size()});
    }
    for (size_t start = 0; start < items.size(); start += 512) {
        batch.n_tokens = 0;
        std::vector<llama_seq_id> ending;
        for (size_t i = start; i < std::min(items.size(), start + 512); i++) {
            Add(batch, items[i].token, items[i].pos, items[i].seq, items[i].last);
            if (items[i].last) {
                rowOf[items[i].seq] = batch.n_tokens - 1;
                ending.push_back(items[i].seq);
            }
        }
        Decode(ctx, batch);
        for (llama_seq_id s : ending) take(s);
    }
    Mark("first-token");
    while (std::any_of(live.begin(), live.end(), [](bool b) { return b; })) {
        batch.n_tokens = 0;
        for (llama_seq_id s = 0; s < nSeq; s++) {
            if (!live[s]) continue;
            Add(batch, generated[s].back(), next[s]++, s, true);
            rowOf[s] = batch.n_tokens - 1;
        }
        Decode(ctx, batch);
        for (llama_seq_id s = 0; s < nSeq; s++) if (live[s]) take(s);
    }
    Mark("generated");

    std::string out = "{\"p_retrieve\":" + std::to_string(pRetrieve) + ",\"candidates\":[";
    for (llama_seq_id s = 0; s < nSeq; s++) {
        if (s > 0) out += ",";
        out += "{\"tokens\":" + std::to_string(generated[s].size()) + ",\"text\":" + JsonString(Detokenize(vocab, generated[s])) + "}";
    }
    out += "]}";
    std::printf("%s\n", out.c_str());
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    Mark("done");
    return 0;
}
