// End-to-end check of the llama-server peer.
// 1. The `tiny` fixture (designed weights, lib/fixtures/FixtureModel.ts): the answers are known, so the
//    decision, the top-20 scoring and the long-form beam search are checked, not just run.
// 2. The `bench` fixture (random weights, ~53M parameters, Self-RAG vocabulary): 12 short-form questions
//    at once on 12 slots, then 2 long-form questions; answers are noise, the wall time is the point.
//   npx tsc -p . && node dist/bench/peer/smoke.js [bench-model.gguf]
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {ensureBenchModel, ensureFixtureModel, MODEL_FILE} from "../benchModel.js";
import {LlamaServerPeer, type PeerMetrics} from "./LlamaServerPeer.js";
import {benchCacheDir} from "./repoRoot.js";
import {peerAnswer, peerAnswerLong, type PeerAnswer, type PeerQuestion} from "./topKSelfRag.js";

const SLOTS = 12;

const TOPICS = ["Paris", "the Nile", "Marie Curie", "photosynthesis", "Mount Everest", "the Roman Empire",
    "jazz", "the printing press", "penicillin", "the Moon landing", "Beethoven", "plate tectonics"];

function question(topic: string): PeerQuestion {
    return {
        question: `What is notable about ${topic}?`,
        passages: [1, 2, 3].map((n) => ({
            title: `${topic} (${n})`,
            text: `${topic} is described in this passage number ${n}, which gives a few facts about ${topic} and its history.`,
        })),
    };
}

/** The tiny fixture in bench/.cache, written once. */
function tinyModelFile(): Promise<string> {
    return ensureFixtureModel(path.join(benchCacheDir(), "tiny.gguf"), "tiny");
}

/**
 * The tiny model's designed behaviour: "capital" in the question asks for retrieval; " Paris" in a passage
 * gives [Relevant] Paris.[Fully supported][Utility:5]; otherwise [Irrelevant] London.[Partially supported]
 * followed by [Retrieval]; "bio" in the context keeps asking for retrieval (multi-segment long form).
 */
async function checkTiny(): Promise<void> {
    const peer = await LlamaServerPeer.start({model: await tinyModelFile(), parallel: 4, ctxPerSlot: 1024});
    try {
        const passages = [
            {title: "Germany", text: "The capital of Germany is Berlin."},
            {title: "France", text: "The capital of France is Paris."},
            {title: "Misc", text: "Nothing to see here."},
        ];
        const capital = await peerAnswer(peer, {question: "What is the capital of France?", passages}, {ndocs: 3, maxNewTokens: 20});
        show("tiny short, capital", capital);
        assert.equal(capital.retrieve, true);
        assert.equal(capital.best?.passage, 1);
        assert.equal(capital.answer, "Paris.");

        const hamlet = await peerAnswer(peer, {question: "Who wrote Hamlet?", passages}, {ndocs: 3, maxNewTokens: 20});
        show("tiny short, no retrieval", hamlet);
        assert.equal(hamlet.retrieve, false);
        assert.equal(hamlet.answer, "London.");

        const bio = await peerAnswerLong(peer, {question: "Write a bio of the capital of France.", passages},
            {ndocs: 3, beamWidth: 2, maxDepth: 4, maxNewTokens: 20});
        show("tiny long, bio", bio);
        assert.equal(bio.retrieve, true);
        // One probe, 3 children at depth 1, then 2 x 3 per further depth while the beam asks for more.
        assert.ok(bio.work.requests > 4, "the beam search went deeper than one level");
        console.log("tiny model checks passed");
    } finally {
        await peer.close();
    }
}

/** The bench model of bench/benchModel.ts, found in this checkout's bench/.cache even when compiled elsewhere. */
async function modelFile(): Promise<string> {
    if (process.argv[2] != null) return path.resolve(process.argv[2]);
    const inCheckout = path.join(benchCacheDir(), path.basename(MODEL_FILE));
    if (fs.existsSync(inCheckout)) return inCheckout;
    await ensureBenchModel();
    return MODEL_FILE;
}

function delta(after: PeerMetrics, before: PeerMetrics): string {
    const keys = ["prompt_tokens_total", "prompt_tokens_cached_total", "tokens_predicted_total", "n_decode_total"];
    return keys.map((k) => `${k.replace(/_total$/, "")}=${(after[k] ?? 0) - (before[k] ?? 0)}`).join(" ") +
        ` busy_slots_per_decode(avg since start)=${(after.n_busy_slots_per_decode ?? 0).toFixed(2)}`;
}

function show(label: string, answer: PeerAnswer): void {
    const p = answer.pRetrieve == null ? "-" : answer.pRetrieve.toFixed(3);
    console.log(`  ${label}: retrieve=${answer.retrieve} p=${p} best=${answer.best?.score.toFixed(3) ?? "-"}` +
        ` (passage ${answer.best?.passage ?? "-"}) candidates=${answer.candidates.length} requests=${answer.work.requests}` +
        ` predicted=${answer.work.predicted}\n    ${JSON.stringify(answer.answer.slice(0, 120))}`);
}

async function timed<T>(what: string, peer: LlamaServerPeer, run: () => Promise<T>): Promise<T> {
    const before = await peer.metrics();
    const started = performance.now();
    const result = await run();
    const seconds = (performance.now() - started) / 1000;
    console.log(`${what}: ${seconds.toFixed(2)} s wall; server: ${delta(await peer.metrics(), before)}`);
    return result;
}

async function main(): Promise<void> {
    await checkTiny();
    const model = await modelFile();
    const startedAt = performance.now();
    const peer = await LlamaServerPeer.start({model, parallel: SLOTS, ctxPerSlot: 1024, logFile: path.join(benchCacheDir(), "llama-server-smoke.log")});
    console.log(`llama-server on port ${peer.port}, ${SLOTS} slots, ready in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
    console.log(`  args: ${peer.args.join(" ")}`);
    try {
        const questions = TOPICS.map(question);
        // Warm-up: first-call costs (thread pools, allocations) are not what the benchmark compares.
        await peerAnswer(peer, questions[0], {ndocs: 3, maxNewTokens: 32, mode: "always"});

        const always = await timed(`short form, ${questions.length} questions concurrently, mode=always, 3 passages, 32 new tokens`, peer,
            () => Promise.all(questions.map((q) => peerAnswer(peer, q, {ndocs: 3, maxNewTokens: 32, mode: "always"}))));
        always.forEach((a, i) => show(`Q${i + 1}`, a));

        const adaptive = await timed(`short form, ${questions.length} questions concurrently, mode=adaptive (threshold 0.2)`, peer,
            () => Promise.all(questions.map((q) => peerAnswer(peer, q, {ndocs: 3, maxNewTokens: 32, threshold: 0.2}))));
        console.log(`  retrieved for ${adaptive.filter((a) => a.retrieve).length}/${adaptive.length}; p_ret: ` +
            adaptive.map((a) => (a.pRetrieve == null ? "absent" : a.pRetrieve.toFixed(3))).join(", "));

        const long = await timed("long form, 2 questions concurrently, mode=always, beam 2, depth 3, 3 passages, 32 new tokens", peer,
            () => Promise.all(questions.slice(0, 2).map((q) => peerAnswerLong(peer, q, {ndocs: 3, beamWidth: 2, maxDepth: 3, maxNewTokens: 32, mode: "always"}))));
        long.forEach((a, i) => show(`L${i + 1}`, a));
    } finally {
        await peer.close();
    }
}

main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
});
