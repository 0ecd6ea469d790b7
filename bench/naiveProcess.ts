// The naive peer of the startup benchmark as a whole process: what a Node developer writing
// Self-RAG with node-llama-cpp's public API alone pays from `node` to the answer (getLlama(),
// loadModel, one context with one sequence, then naiveShortForm.ts: the candidates one after
// another with full probability maps, scored with the same native scorer).
//   node dist/bench/naiveProcess.js MODEL PASSAGES.jsonl QUESTION CONTEXT_SIZE THREADS MAX_NEW_TOKENS
// Prints {"best", "candidates": [{"tokens", "text"}]} on stdout.
import type {Token} from "node-llama-cpp";
import {loadAddon} from "../lib/engine/addon.js";
import {REFLECTION_COUNT} from "../lib/engine/ReflectionTokens.js";
import {readPassagesJsonl} from "../lib/selfrag/passages.js";
import {SegmentScorer} from "../lib/selfrag/SegmentScorer.js";
import {naiveAnswer} from "./naiveShortForm.js";

async function main(): Promise<void> {
    const [modelPath, passagesFile, question, contextSize, threads, maxNewTokens] = process.argv.slice(2);
    if (maxNewTokens == null) throw new Error("usage: naiveProcess MODEL PASSAGES.jsonl QUESTION CONTEXT_SIZE THREADS MAX_NEW_TOKENS");
    const passages = await readPassagesJsonl(passagesFile);
    const {llama} = await loadAddon({gpu: false});
    const model = await llama.loadModel({modelPath, gpuLayers: 0});
    try {
        const context = await model.createContext({contextSize: Number(contextSize), sequences: 1, threads: Number(threads)});
        const reflectionIds = Int32Array.from({length: REFLECTION_COUNT}, (_, i) => 32000 + i);
        const answer = await naiveAnswer(context.getSequence(), {
            question, passages, maxNewTokens: Number(maxNewTokens), reflectionIds, scorer: await SegmentScorer.create(reflectionIds)
        });
        console.log(JSON.stringify({best: answer.best, candidates: answer.candidates.map((c) => ({
            tokens: c.tokens.length, text: model.detokenize(Array.from(c.tokens) as Token[], true)
        }))}));
    } finally {
        await model.dispose();
    }
}

main().then(() => process.exit(0), (error: unknown) => {
    console.error(error);
    process.exit(1);
});
