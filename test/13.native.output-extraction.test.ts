// Extraction at the output tensor (extraction: "output"): logits rows are summarised inside
// llama.cpp's graph, from the tensor where the backend computed them (OutputExtractor; on a GPU
// the CUDA kernel does it there). On this CPU-only machine the same hook runs the CPU kernel on
// the tensor in host memory, which tests everything but the kernel launch: which output row
// belongs to which token across steps, views and mixed prefill/generation batches, and the
// non-finite rows. The oracle is the default extraction from llama.cpp's host copy: every token
// and error must be identical, scores equal within 1e-4 as everywhere in this project (concurrent
// questions share decode steps by timing, and llama.cpp's matrix kernels round differently for
// other batch sizes; 1e-6 was seen exceeded).
import assert from "node:assert/strict";
import {loadAddon} from "../lib/engine/addon.js";
import type {LongFormAnswer} from "../lib/selfrag/LongForm.js";
import {formatPrompt, type Passage} from "../lib/selfrag/prompts.js";
import type {ShortFormAnswer} from "../lib/selfrag/ShortForm.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {rejectsWith} from "../test-support/assertions.js";
import {poisonedModel, randomModel} from "../test-support/fixtures.js";

const PASSAGES: Passage[] = [
    {title: "Rome", text: "Rome is the capital city of Italy and of the Lazio region, on the Tiber."},
    {title: "Paris", text: "Paris is the capital and largest city of France, on the Seine."},
    {title: "Vienna", text: "Vienna is the capital of Austria, on the Danube, and its largest city."},
    {title: "Madrid", text: "Madrid is the capital of Spain, in the centre of the Iberian peninsula."}
];

function closeAll(actual: readonly number[], expected: readonly number[], what: string): void {
    assert.equal(actual.length, expected.length, what);
    actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]) <= 1e-4, `${what} ${i}: ${a} vs ${expected[i]}`));
}

async function both<T>(run: (model: SelfRagModel) => Promise<T>, options: {batchSize?: number} = {}): Promise<{host: T, output: T, stats: {host: number, output: number}}> {
    const common = {modelPath: await randomModel(), contextSize: 512, sequences: 8, gpu: false as const, threads: 1, ...options};
    const host = await SelfRagModel.load({...common, extraction: "host"});
    const output = await SelfRagModel.load({...common, extraction: "output"});
    try {
        assert.equal(host.context.info.extraction, "host");
        assert.equal(output.context.info.extraction, "output");
        const [a, b] = await Promise.all([run(host), run(output)]);
        assert.equal(output.context.stats.rowsOnDevice, 0, "no CUDA device: no row went through the GPU kernel");
        assert.equal(output.context.stats.extractionError, undefined);
        return {host: a, output: b, stats: {host: host.context.stats.rowsExtracted, output: output.context.stats.rowsExtracted}};
    } finally {
        await host.dispose();
        await output.dispose();
    }
}

describe("extraction at the output tensor (the GPU path's plumbing, on the CPU)", function () {
    this.timeout(300_000);

    it("short- and long-form answers, concurrent, are identical to host extraction: every token and score", async () => {
        const questions = ["Which city is the capital of Italy?", "Name the capital of France.", "What is on the Danube?",
            "Where is Madrid?", "Tell me about capitals.", "Which river runs through Paris?"];
        const {host, output, stats} = await both(async (model) => {
            const short = questions.map((q, i) => model.answer({question: q, passages: PASSAGES}, {ndocs: 2 + (i % 3), maxNewTokens: 10 + 3 * i,
                mode: i % 2 === 0 ? "always" : "adaptive", traces: true}));
            const long = model.answerLong({question: "Write about European capitals.", passages: PASSAGES},
                {ndocs: 2, beamWidth: 2, maxDepth: 3, maxNewTokens: 12, mode: "always"});
            return {short: await Promise.all(short), long: await long};
        });
        assert.ok(stats.output > 100 && stats.output === stats.host, `rows: ${stats.output} vs ${stats.host}`);
        host.short.forEach((h: ShortFormAnswer, i: number) => {
            const o = output.short[i];
            assert.deepEqual(o.trace!.candidates.map((c) => c.tokens), h.trace!.candidates.map((c) => c.tokens), `question ${i}: token ids`);
            closeAll(o.candidates.map((c) => c.score), h.candidates.map((c) => c.score), `question ${i}: scores`);
            closeAll([o.retrieve.p], [h.retrieve.p], `question ${i}: P(retrieve)`);
            assert.equal(o.answer, h.answer);
        });
        const hl = host.long as LongFormAnswer;
        const ol = output.long as LongFormAnswer;
        assert.deepEqual(ol.tree.map((n) => [n.text, n.parent]), hl.tree.map((n) => [n.text, n.parent]));
        closeAll(ol.tree.map((n) => n.score), hl.tree.map((n) => n.score), "long-form node scores");
        assert.equal(ol.answer, hl.answer);
    });

    it("prompts longer than a decode view (batchSize 16): rows map to their tokens across views", async () => {
        const long = `${"Tell me everything you know about the capital cities of Europe and their rivers. ".repeat(4)}Answer briefly.`;
        const {host, output} = await both(async (model) => {
            const inspected = await model.inspect(formatPrompt(long));
            const answers = await Promise.all([0, 1, 2].map((i) => model.answer({question: `${long} (${i})`, passages: PASSAGES},
                {ndocs: 3, maxNewTokens: 8, mode: "always", traces: true})));
            return {inspected, answers};
        }, {batchSize: 16});
        assert.ok(host.inspected.promptTokens > 48, "the prompt spans several views");
        assert.deepEqual(output.inspected, host.inspected);
        output.answers.forEach((o, i) => {
            assert.deepEqual(o.trace!.candidates.map((c) => c.tokens), host.answers[i].trace!.candidates.map((c) => c.tokens));
            closeAll(o.candidates.map((c) => c.score), host.answers[i].candidates.map((c) => c.score), `answer ${i}: scores`);
        });
    });

    it("non-finite logits give the host path's answers: NaN fails with NAN_LOGITS naming the index, +Infinity is certain", async () => {
        const nan = await SelfRagModel.load({modelPath: await poisonedModel("nan", 1000), sequences: 4, contextSize: 256, gpu: false, extraction: "output"});
        try {
            await assert.rejects(nan.inspect(formatPrompt("What is the capital of France?")),
                rejectsWith("NAN_LOGITS", /sequence \d+ after position \d+ holds NaN at index 1000\b/));
            assert.equal(nan.context.slots.inUse, 0);
        } finally {
            await nan.dispose();
        }
        const inf = await SelfRagModel.load({modelPath: await poisonedModel("inf", 32001), sequences: 2, contextSize: 256, gpu: false, extraction: "output"});
        try {
            const inspected = await inf.inspect(formatPrompt("Say hello."));
            assert.equal(inspected.next.id, 32001);
            assert.equal(inspected.next.logprob, 0);
            assert.equal(inspected.reflection["[No Retrieval]"], Number.NEGATIVE_INFINITY);
        } finally {
            await inf.dispose();
        }
    });

    it("large views (40 generating slots) summarised over two threads give the one-thread answers", async () => {
        const questions = Array.from({length: 10}, (_, i) => ({question: `Which capital is number ${i}?`, passages: PASSAGES}));
        const answers: ShortFormAnswer[][] = [];
        for (const threads of [1, 2]) {
            const model = await SelfRagModel.load({modelPath: await randomModel(), contextSize: 128, sequences: 40, gpu: false, threads});
            try {
                answers.push(await Promise.all(questions.map((q) => model.answer(q, {ndocs: 4, maxNewTokens: 12, mode: "always", traces: true}))));
            } finally {
                await model.dispose();
            }
        }
        answers[1].forEach((a, i) => {
            assert.deepEqual(a.trace!.candidates.map((c) => c.tokens), answers[0][i].trace!.candidates.map((c) => c.tokens), `question ${i}`);
            closeAll(a.candidates.map((c) => c.score), answers[0][i].candidates.map((c) => c.score), `question ${i}: scores`);
        });
    });

    it("is refused without the unified KV cache, and an unknown value is refused by name", async () => {
        await assert.rejects(SelfRagModel.load({modelPath: await randomModel(), sequences: 2, contextSize: 256, gpu: false, unifiedKv: false,
            extraction: "output"}), rejectsWith("INVALID_ARGUMENT", /unified KV cache/));
        await assert.rejects(SelfRagModel.load({modelPath: await randomModel(), gpu: false, extraction: "gpu" as "output"}),
            rejectsWith("INVALID_ARGUMENT", /extraction/));
        const {addon} = await loadAddon({gpu: false});
        const device = addon.cudaDevice();
        assert.equal(device.built, false, "the CPU variant holds no CUDA kernels");
        assert.equal(device.available, false);
        assert.match(device.reason, /built without the CUDA kernels/);
    });
});
