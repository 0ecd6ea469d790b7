// The native surface checks its own arguments (it is callable directly through loadAddon()): every
// entry point, given a value of the wrong kind or out of range, throws a SelfRagError with code
// INVALID_ARGUMENT whose message names the argument as JavaScript spells it, never a TypeError and
// never a crash. One table, one assertion (native/errors.h's Require* helpers are the one idiom).
import assert from "node:assert/strict";
import {loadAddon} from "../lib/engine/addon.js";
import {REFLECTION_TOKENS} from "../lib/engine/ReflectionTokens.js";
import type {NativeAddon, NativeContext, NativeModel} from "../lib/engine/types.js";
import {SelfRagError} from "../lib/errors.js";
import {rejectsWith} from "../test-support/assertions.js";
import {tinyModel} from "../test-support/fixtures.js";

type Fn = (...args: unknown[]) => unknown;

/** An object whose conversion to a primitive throws: coercing it would escape as that error. */
const hostile = {valueOf(): never { throw new Error("valueOf was called"); }, toString(): never { throw new Error("toString was called"); }};

describe("native argument checks: one idiom on every entry point", function () {
    let addon: NativeAddon;
    let model: NativeModel;
    let fresh: NativeModel;
    let ctx: NativeContext;
    let reflectionIds: Int32Array;
    const contextOptions = () => ({contextSize: 64, sequences: 2, threads: 1, threadsBatch: 1, batchSize: 32, unifiedKv: true, reflectionIds});

    before(async () => {
        ({addon} = await loadAddon({gpu: false}));
        model = new addon.Model();
        await model.load(await tinyModel(), {gpuLayers: 0, useMmap: true});
        fresh = new addon.Model();
        reflectionIds = model.findTokens(REFLECTION_TOKENS.map((t) => t.text));
        ctx = new addon.Context(model, contextOptions(), () => undefined);
    });
    after(() => {
        ctx?.dispose();
        model?.dispose();
        fresh?.dispose();
    });

    // [entry point, argument named in the message, call]
    const table: [string, string, () => unknown][] = [];
    const row = (entry: string, argument: string, call: () => unknown) => table.push([entry, argument, call]);

    // Module functions.
    const extract = (o: Record<string, unknown>) => () => {
        const a = {logits: new Float32Array(64), rows: 2, vocab: 32, ids: Int32Array.of(0, 31), threads: 1, isa: "auto",
            out: {argmax: new Int32Array(2), argmaxLogprob: new Float32Array(2), logSumExp: new Float32Array(2), reflection: new Float32Array(4)}, ...o};
        return (addon.extractReflectionLogprobs as unknown as Fn)(a.logits, a.rows, a.vocab, a.ids, a.out, a.threads, a.isa);
    };
    const goodOut = () => ({argmax: new Int32Array(2), argmaxLogprob: new Float32Array(2), logSumExp: new Float32Array(2), reflection: new Float32Array(4)});
    for (const logits of ["x", new Float64Array(64), Symbol("logits"), undefined]) row("extractReflectionLogprobs", "logits", extract({logits}));
    for (const rows of ["2", NaN, -1, 2 ** 31, 1.5, 2n, hostile]) row("extractReflectionLogprobs", "rows", extract({rows}));
    for (const vocab of [0, Infinity, null]) row("extractReflectionLogprobs", "vocab", extract({vocab}));
    for (const ids of [[0, 31], new Uint32Array(2)]) row("extractReflectionLogprobs", "ids", extract({ids}));
    for (const out of [null, 5, "out"]) row("extractReflectionLogprobs", "out", extract({out}));
    row("extractReflectionLogprobs", "out.argmax", extract({out: {...goodOut(), argmax: new Uint8Array(8)}}));
    row("extractReflectionLogprobs", "out.argmax", extract({out: {...goodOut(), argmax: new Int32Array(1)}}));
    row("extractReflectionLogprobs", "out.reflection", extract({out: {...goodOut(), reflection: undefined}}));
    for (const threads of [0, 1025, {}, "1"]) row("extractReflectionLogprobs", "threads", extract({threads}));
    for (const isa of [3, "sse9", undefined, hostile]) row("extractReflectionLogprobs", "isa", extract({isa}));

    const ratio = (...a: unknown[]) => () => (addon.retrievalRatio as unknown as Fn)(...a);
    row("retrievalRatio", "logRetrieval", ratio("a", 0, 0));
    row("retrievalRatio", "logContinue", ratio(0, undefined, 0));
    row("retrievalRatio", "logNoRetrieval", ratio(0, 0, 1n));
    row("retrievalRatio", "logRetrieval", ratio(hostile, 0, 0));

    const weights = {relevance: 1, support: 1, utility: 0.5, useSequenceScore: true, referenceLongFormUtility: false};
    const score = (o: Record<string, unknown>) => () => {
        const a = {offsets: Int32Array.of(0, 2, 3), tokens: Int32Array.of(1, 2, 3), logprobs: new Float32Array(3), reflection: new Float32Array(45),
            ids: Int32Array.from({length: 15}, (_, i) => 32000 + i), weights, device: undefined, ...o};
        return (addon.scoreSegments as unknown as Fn)(a.offsets, a.tokens, a.logprobs, a.reflection, a.ids, a.weights, a.device);
    };
    row("scoreSegments", "offsets", score({offsets: new Uint8Array(3)}));
    row("scoreSegments", "offsets", score({offsets: new Int32Array(0)}));
    row("scoreSegments", "offsets", score({offsets: Int32Array.of(0, 1000000, 3)}));
    row("scoreSegments", "offsets[0]", score({offsets: Int32Array.of(-5, 0, 3)}));
    row("scoreSegments", "tokens", score({tokens: Int32Array.of(1)}));
    row("scoreSegments", "logprobs", score({logprobs: [0, 0, 0]}));
    row("scoreSegments", "reflection", score({reflection: new Float32Array(44)}));
    row("scoreSegments", "reflectionIds", score({ids: new Int32Array(14)}));
    for (const w of [null, 1, "weights"]) row("scoreSegments", "weights", score({weights: w}));
    row("scoreSegments", "weights.relevance", score({weights: {...weights, relevance: "1"}}));
    row("scoreSegments", "weights.utility", score({weights: {...weights, utility: hostile}}));
    row("scoreSegments", "weights.useSequenceScore", score({weights: {...weights, useSequenceScore: "yes"}}));
    row("scoreSegments", "device", score({device: "gpu"}));

    row("setErrorClass", "errorClass", () => (addon.setErrorClass as unknown as Fn)(5));

    // Model.
    const m = (name: keyof NativeModel, target: () => NativeModel, ...a: unknown[]) => () => (target()[name] as unknown as Fn).call(target(), ...a);
    row("Model.load", "path", m("load", () => fresh, 5, {gpuLayers: 0, useMmap: true}));
    row("Model.load", "options", m("load", () => fresh, "x.gguf", null));
    row("Model.load", "options.gpuLayers", m("load", () => fresh, "x.gguf", {gpuLayers: "all"}));
    row("Model.load", "options.gpuLayers", m("load", () => fresh, "x.gguf", {gpuLayers: 2 ** 40}));
    row("Model.load", "options.useMmap", m("load", () => fresh, "x.gguf", {gpuLayers: 0, useMmap: "yes"}));
    row("Model.tokenize", "text", m("tokenize", () => model, 5));
    row("Model.tokenize", "text", m("tokenize", () => model, hostile));
    row("Model.tokenize", "addBos", m("tokenize", () => model, "a", "yes"));
    row("Model.tokenize", "parseSpecial", m("tokenize", () => model, "a", true, 1));
    row("Model.detokenize", "tokens", m("detokenize", () => model, [1, 2]));
    row("Model.detokenize", "tokens", m("detokenize", () => model, new Uint32Array(2)));
    row("Model.detokenize", "renderSpecial", m("detokenize", () => model, Int32Array.of(1), "no"));
    for (const id of ["5", 1.5, 2 ** 32, Symbol("id")]) row("Model.tokenText", "id", m("tokenText", () => model, id));
    row("Model.findTokens", "texts", m("findTokens", () => model, "abc"));
    row("Model.findTokens", "texts[0]", m("findTokens", () => model, [Symbol("t")]));
    row("Model.findTokens", "texts[1]", m("findTokens", () => model, ["a", 3]));

    // new Context(model, options, onComplete).
    const context = (o: Record<string, unknown> = {}, args?: unknown[]) => () => {
        const a = args ?? [model, {...contextOptions(), ...o}, () => undefined];
        const created = new (addon.Context as unknown as new (...a: unknown[]) => NativeContext)(...a);
        created.dispose(); // only reached when the row is wrong: the assertion below fails
        return created;
    };
    row("new Context", "model", context({}, [undefined, {}, () => undefined]));
    row("new Context", "model", () => context({}, [{}, contextOptions(), () => undefined])());
    row("new Context", "options", () => context({}, [model, null, () => undefined])());
    row("new Context", "onComplete", () => context({}, [model, contextOptions(), "callback"])());
    for (const contextSize of [0, "64", 2 ** 31, -64]) row("new Context", "options.contextSize", context({contextSize}));
    row("new Context", "options.sequences", context({sequences: 257}));
    row("new Context", "options.sequences", context({sequences: 0}));
    row("new Context", "options.threads", context({threads: 0}));
    row("new Context", "options.threadsBatch", context({threadsBatch: 1.5}));
    row("new Context", "options.batchSize", context({batchSize: -1}));
    row("new Context", "options.stepTokens", context({stepTokens: NaN}));
    row("new Context", "options.unifiedKv", context({unifiedKv: "true"}));
    row("new Context", "options.reactionWindowUs", context({reactionWindowUs: -1}));
    row("new Context", "options.kvCells", context({kvCells: 0}));
    row("new Context", "options.kvCells", context({kvCells: 128, unifiedKv: false}));
    row("new Context", "options.reflectionIds", context({reflectionIds: [1, 2]}));
    row("new Context", "options.extraction", context({extraction: "gpu"}));
    row("new Context", "options.extraction", context({extraction: "output", unifiedKv: false}));

    // Context methods: a bad item refuses the whole call before any work is queued.
    const submit = (...works: unknown[]) => () => (ctx.submit as unknown as Fn).call(ctx, works);
    row("Context.submit", "works", () => (ctx.submit as unknown as Fn).call(ctx, "works"));
    row("Context.submit", "works[0]", submit(5));
    row("Context.submit", "works[0].kind", submit({kind: "jump", seq: 0}));
    row("Context.submit", "works[0].kind", submit({seq: 0}));
    for (const seq of ["0", 1.5, 2 ** 32, undefined]) row("Context.submit", "works[0].seq", submit({kind: "release", seq}));
    row("Context.submit", "works[1].seq", submit({kind: "release", seq: 0}, {kind: "release", seq: "1"}));
    row("Context.submit", "works[0].dst", submit({kind: "fork", seq: 0, dst: "1"}));
    row("Context.submit", "works[0].dst", submit({kind: "fork", seq: 0, dst: 0}));
    row("Context.submit", "works[0].nPast", submit({kind: "trim", seq: 0, nPast: -1}));
    row("Context.submit", "works[0].tokens", submit({kind: "prefill", seq: 0, tokens: [1, 2]}));
    row("Context.submit", "works[0].allPositions", submit({kind: "prefill", seq: 0, tokens: Int32Array.of(1), allPositions: "yes"}));
    row("Context.submit", "works[0].shareWith", submit({kind: "prefill", seq: 0, tokens: Int32Array.of(1), shareWith: [1]}));
    row("Context.submit", "works[0].shareWith", submit({kind: "prefill", seq: 0, tokens: Int32Array.of(1), shareWith: Int32Array.of(0)}));
    row("Context.submit", "works[0].shareWith", submit({kind: "prefill", seq: 0, tokens: Int32Array.of(1), shareWith: Int32Array.of(1, 1)}));
    row("Context.submit", "works[0].maxTokens", submit({kind: "generate", seq: 0, maxTokens: "4"}));
    row("Context.submit", "works[0].stopTokens", submit({kind: "generate", seq: 0, maxTokens: 4, stopTokens: [2]}));
    row("Context.submit", "works[0].gate", submit({kind: "generate", seq: 0, maxTokens: 4, gate: 5}));
    const gate = {noRetrievalIndex: 0, retrievalIndex: 1, continueIndex: 2, threshold: 0.2};
    row("Context.submit", "works[0].gate.retrievalIndex", submit({kind: "generate", seq: 0, maxTokens: 4, gate: {...gate, retrievalIndex: 16}}));
    row("Context.submit", "works[0].gate.noRetrievalIndex", submit({kind: "generate", seq: 0, maxTokens: 4, gate: {...gate, noRetrievalIndex: -1}}));
    row("Context.submit", "works[0].gate.continueIndex", submit({kind: "generate", seq: 0, maxTokens: 4, gate: {...gate, continueIndex: undefined}}));
    row("Context.submit", "works[0].gate.threshold", submit({kind: "generate", seq: 0, maxTokens: 4, gate: {...gate, threshold: "0.2"}}));
    row("Context.cancel", "seqs", () => (ctx.cancel as unknown as Fn).call(ctx, [0]));
    row("Context.sequenceInfo", "seq", () => (ctx.sequenceInfo as unknown as Fn).call(ctx, "0"));
    row("Context.sequenceInfo", "seq", () => (ctx.sequenceInfo as unknown as Fn).call(ctx, 2 ** 32));

    it(`${table.length} bad arguments across ${new Set(table.map(([entry]) => entry)).size} entry points: each a SelfRagError INVALID_ARGUMENT naming the argument`, () => {
        const wrong: string[] = [];
        for (const [entry, argument, call] of table) {
            try {
                call();
                wrong.push(`${entry} (${argument}): did not throw`);
            } catch (error) {
                const named = new RegExp(`(^|[^\\w.\\[])${argument.replace(/[.[\]]/g, "\\$&")}([^\\w.\\[]|$)`);
                if (!(error instanceof SelfRagError)) wrong.push(`${entry} (${argument}): ${String(error)} is not a SelfRagError`);
                else if (error.code !== "INVALID_ARGUMENT") wrong.push(`${entry} (${argument}): code ${error.code}: ${error.message}`);
                else if (!named.test(error.message)) wrong.push(`${entry} (${argument}): "${error.message}" does not name ${argument}`);
            }
        }
        assert.deepEqual(wrong, []);
    });

    it("the handles still work after every refusal (nothing half-applied, nothing queued)", async () => {
        assert.equal(ctx.stats().pendingWork, 0);
        assert.equal(ctx.sequenceInfo(0).nPast, 0);
        assert.ok(model.tokenize("hello", true, false).length > 0);
        const ok = (addon.extractReflectionLogprobs as unknown as Fn)(new Float32Array(64), 2, 32, Int32Array.of(0, 31),
            {argmax: new Int32Array(2), argmaxLogprob: new Float32Array(2), logSumExp: new Float32Array(2), reflection: new Float32Array(4)}, 1, "scalar");
        assert.equal(ok, true);
    });

    it("slots, token ids and disposed handles keep codes of their own", () => {
        assert.throws(() => ctx.sequenceInfo(2), rejectsWith("SEQUENCE_OUT_OF_RANGE", /slot 2 does not exist/));
        assert.throws(() => ctx.submit([{kind: "fork", seq: 0, dst: 7}]), rejectsWith("SEQUENCE_OUT_OF_RANGE"));
        assert.throws(() => ctx.submit([{kind: "prefill", seq: 0, tokens: Int32Array.of(1, 99999)}]), rejectsWith("INVALID_TOKEN", /99999/));
        assert.throws(() => model.tokenText(99999), rejectsWith("INVALID_TOKEN"));
        assert.throws(() => model.detokenize(Int32Array.of(-1), false), rejectsWith("INVALID_TOKEN"));
        const other = new addon.Model();
        assert.throws(() => other.tokenize("x", true, false), rejectsWith("MODEL_NOT_LOADED"));
        assert.throws(() => new addon.Context(other, contextOptions(), () => undefined), rejectsWith("MODEL_NOT_LOADED"));
        other.dispose();
        assert.throws(() => other.tokenize("x", true, false), rejectsWith("MODEL_DISPOSED"));
        const gone = new addon.Context(model, contextOptions(), () => undefined);
        gone.dispose();
        // A disposed handle is refused before its arguments are looked at.
        assert.throws(() => (gone.submit as unknown as Fn).call(gone, "not even an array"), rejectsWith("CONTEXT_DISPOSED"));
        assert.throws(() => gone.sequenceInfo(0), rejectsWith("CONTEXT_DISPOSED"));
    });
});
