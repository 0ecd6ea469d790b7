// Continuous batching: questions join the running decode steps whenever they arrive, whatever
// their options, and each gets exactly the answer it gets alone. The oracle is always the same
// question answered alone on an idle context; "while others run" is shown with the engine's
// counters (context.stats.steps, slots.inUse, sequenceInfo), never with wall-clock timing.
import assert from "node:assert/strict";
import type {NativeRows, NativeSegment} from "../lib/engine/types.js";
import {SlotPool} from "../lib/engine/SlotPool.js";
import {SelfRagError} from "../lib/errors.js";
import type {AnswerEvent, RunControl} from "../lib/selfrag/events.js";
import type {LongFormAnswer, LongFormOptions, LongFormQuestion} from "../lib/selfrag/LongForm.js";
import type {Passage} from "../lib/selfrag/prompts.js";
import {formatPrompt} from "../lib/selfrag/prompts.js";
import type {ShortFormAnswer, ShortFormOptions, ShortFormQuestion} from "../lib/selfrag/ShortForm.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {RequestScheduler} from "../lib/serving/RequestScheduler.js";
import {rejectsWith} from "../test-support/assertions.js";
import {randomModel, tinyModel} from "../test-support/fixtures.js";
import {mulberry32} from "../test-support/random.js";

// ---------------------------------------------------------------------------------------------
// Helpers

type Spec =
    | {form: "short", question: ShortFormQuestion, options: ShortFormOptions}
    | {form: "long", question: LongFormQuestion, options: LongFormOptions};
type Answer = ShortFormAnswer | LongFormAnswer;

function short(question: string, passages: readonly Passage[], options: ShortFormOptions, id?: string): Spec {
    return {form: "short", question: {...(id != null ? {id} : {}), question, passages}, options};
}

function long(question: string, passages: readonly Passage[], options: LongFormOptions): Spec {
    return {form: "long", question: {question, passages}, options};
}

function ask(model: SelfRagModel, spec: Spec, control: RunControl = {}): Promise<Answer> {
    return spec.form === "short" ? model.answer(spec.question, spec.options, control) : model.answerLong(spec.question, spec.options, control);
}

/** Each question alone, one after the other, on an otherwise idle context: the oracle. */
async function aloneAnswers(model: SelfRagModel, specs: readonly Spec[]): Promise<Answer[]> {
    const out: Answer[] = [];
    for (const spec of specs) {
        assert.equal(model.context.slots.inUse, 0, "the oracle runs on an idle context");
        out.push(await ask(model, spec));
    }
    return out;
}

function near(actual: number, expected: number, tolerance: number, what: string): void {
    assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} vs ${expected} (tolerance ${tolerance})`);
}

function assertSameShort(actual: ShortFormAnswer, expected: ShortFormAnswer, what: string): void {
    assert.equal(actual.retrieve.decision, expected.retrieve.decision, `${what}: retrieval decision`);
    near(actual.retrieve.p, expected.retrieve.p, 1e-4, `${what}: p`);
    assert.equal(actual.candidates.length, expected.candidates.length, `${what}: candidates`);
    actual.candidates.forEach((c, i) => {
        const e = expected.candidates[i];
        assert.equal(c.passage?.id, e.passage?.id, `${what}: candidate ${i} passage`);
        assert.equal(c.text, e.text, `${what}: candidate ${i} text`);
        assert.equal(c.tokens, e.tokens, `${what}: candidate ${i} token count`);
        assert.equal(c.stopReason, e.stopReason, `${what}: candidate ${i} stop reason`);
        near(c.score, e.score, 1e-4, `${what}: candidate ${i} score`);
    });
    if (expected.trace != null) {
        assert.deepEqual(actual.trace!.candidates.map((c) => c.tokens), expected.trace.candidates.map((c) => c.tokens), `${what}: token ids`);
    }
    assert.equal(actual.best, expected.best, `${what}: best candidate`);
    assert.equal(actual.answer, expected.answer, `${what}: answer`);
    assert.deepEqual(actual.warnings, expected.warnings, `${what}: warnings`);
}

function assertSameLong(actual: LongFormAnswer, expected: LongFormAnswer, what: string): void {
    assert.equal(actual.retrieve.decision, expected.retrieve.decision, `${what}: retrieval decision`);
    near(actual.retrieve.p, expected.retrieve.p, 1e-4, `${what}: p`);
    assert.equal(actual.tree.length, expected.tree.length, `${what}: tree size`);
    actual.tree.forEach((n, i) => {
        const e = expected.tree[i];
        assert.deepEqual([n.parent, n.depth, n.passage?.id, n.text, n.stopReason, n.asksRetrieval, n.inBeam],
            [e.parent, e.depth, e.passage?.id, e.text, e.stopReason, e.asksRetrieval, e.inBeam], `${what}: node ${i}`);
        near(n.score, e.score, 1e-4 * Math.max(1, Math.abs(e.score)), `${what}: node ${i} score`);
    });
    assert.equal(actual.answer, expected.answer, `${what}: answer`);
    assert.deepEqual(actual.segments.map((s) => s.text), expected.segments.map((s) => s.text), `${what}: segments`);
    assert.equal(actual.stats.evaluatedTokens, expected.stats.evaluatedTokens, `${what}: evaluated tokens`);
    assert.equal(actual.stats.stop, expected.stats.stop, `${what}: stop`);
}

function assertSameAnswer(spec: Spec, actual: Answer, expected: Answer, what: string): void {
    if (spec.form === "short") assertSameShort(actual as ShortFormAnswer, expected as ShortFormAnswer, what);
    else assertSameLong(actual as LongFormAnswer, expected as LongFormAnswer, what);
}

/** Polls (yielding to the event loop) until `condition` holds; the deadline only turns a hang into a clear failure. */
async function waitFor(what: string, condition: () => boolean): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (!condition()) {
        if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 0));
    }
}

/** Waits all, then throws the first failure (no question is left running behind a failed assertion). */
async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
    const settled = await Promise.allSettled(promises);
    const failed = settled.find((s) => s.status === "rejected");
    if (failed != null) throw (failed as PromiseRejectedResult).reason;
    return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/** A promise that records whether it settled (for "still running" checks). */
function track<T>(promise: Promise<T>): {promise: Promise<T>, settled: () => boolean} {
    let done = false;
    const wrapped = promise.finally(() => {
        done = true;
    });
    wrapped.catch(() => undefined);
    return {promise: wrapped, settled: () => done};
}

// Unhandled rejections are a failure of the engine (a flow that leaves a promise rejected and
// unobserved crashes a plain Node process): every test checks none happened.
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
async function assertNoUnhandledRejections(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const seen = unhandled.splice(0).map((r) => (r instanceof SelfRagError ? `${r.code}: ${r.message}` : String(r)));
    assert.deepEqual(seen, [], "no promise rejection left unhandled");
}

const POOL: Passage[] = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."},
    {id: "m", title: "Madrid", text: "Madrid is in Spain, on the Manzanares river, and is its largest city."},
    {id: "v", title: "Vienna", text: "Vienna is the capital of Austria and lies on the Danube. ".repeat(3).trim()},
    {id: "w", title: "War and Peace", text: "War and Peace is a novel by Leo Tolstoy, first published in 1869."},
    {id: "g", title: "Goya", text: "Francisco Goya was a Spanish painter and printmaker. ".repeat(2).trim()},
    {id: "n", title: "Primes", text: "A prime number is a natural number greater than 1 that is not a product of two smaller natural numbers."}
];
const QUESTIONS = [
    "What is the capital of France?", "Name a famous painter from Spain, and explain briefly why.", "Who wrote the novel War and Peace?",
    "List three prime numbers.", "Tell me about Vienna.", "Which river flows through Madrid?", "Where is Rome?",
    "Tell me a bio of Francisco Goya.", "What is the largest city of Germany?", "Explain what a prime number is, with an example."
];

/** Random per-question options: short and long form, modes, thresholds, weights, budgets, widths. */
function randomSpec(rng: () => number, i: number): Spec {
    const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
    const shuffled = [...POOL].sort(() => rng() - 0.5);
    const passages = shuffled.slice(0, int(1, 5));
    const question = `${pick(QUESTIONS)} (${i})`;
    const common = {
        mode: pick(["adaptive", "adaptive", "adaptive", "always", "never"] as const),
        threshold: Math.round((0.05 + 0.9 * rng()) * 1000) / 1000,
        weights: {relevance: rng() * 2, support: rng() * 2, utility: rng(), useSequenceScore: rng() < 0.8},
        maxNewTokens: int(4, 160)
    };
    if (rng() < 0.6) {
        return {form: "short", question: {id: `q${i}`, question, passages},
            options: {...common, ndocs: int(1, 5), traces: true, closedSet: rng() < 0.2}};
    }
    return {form: "long", question: {question, passages}, options: {...common, ndocs: int(1, 3), beamWidth: int(1, 2), maxDepth: int(2, 4),
        contextPolicy: pick(["reference", "interleaved"] as const), rootDecision: rng() < 0.2 ? "reference" : "threshold"}};
}

// ---------------------------------------------------------------------------------------------

describe("continuous batching", function () {
    before(() => {
        process.on("unhandledRejection", onUnhandled);
    });
    after(() => {
        process.off("unhandledRejection", onUnhandled);
    });

    describe("questions on the random-weight model (long generations)", () => {
        let model: SelfRagModel;
        before(async () => {
            model = await SelfRagModel.load({modelPath: await randomModel(), sequences: 12, contextSize: 512, gpu: false});
        });
        after(async () => model?.dispose());
        afterEach(async () => {
            assert.equal(model.context.slots.inUse, 0, "every slot is back in the pool after each test");
            // Released slots are cleared at the next step; after that no work is left in the loop.
            await waitFor("the step loop to drain", () => model.context.stats.pendingWork === 0);
        });

        it("questions arriving at random moments with random options answer exactly as each alone", async () => {
            const ctx = model.context;
            const rng = mulberry32(18);
            const specs = Array.from({length: 16}, (_, i) => randomSpec(rng, i));
            // Arrival moments in engine steps: 0 = same tick as the previous question.
            const gaps = specs.map(() => (rng() < 0.3 ? 0 : 1 + Math.floor(rng() * 50)));
            let inFlight = 0;
            let running = 0;
            let maxRunning = 0;
            let arrivedWhileBusy = 0;
            const runs: Promise<Answer>[] = [];
            for (const [i, spec] of specs.entries()) {
                if (gaps[i] > 0) {
                    const target = ctx.stats.steps + gaps[i];
                    await waitFor(`step ${target}`, () => ctx.stats.steps >= target || inFlight === 0);
                }
                if (inFlight > 0) arrivedWhileBusy++;
                inFlight++;
                let started = false;
                runs.push(ask(model, spec, {onStart: () => {
                    started = true;
                    maxRunning = Math.max(maxRunning, ++running);
                }}).finally(() => {
                    inFlight--;
                    if (started) running--;
                }));
            }
            const together = await settleAll(runs);
            assert.equal(ctx.slots.inUse, 0);
            // The schedule really overlapped questions (short and long mixed).
            assert.ok(arrivedWhileBusy >= specs.length / 2, `${arrivedWhileBusy} of ${specs.length} arrived while others ran`);
            assert.ok(maxRunning >= 3, `at most ${maxRunning} questions held slots at once`);
            assert.ok(specs.some((s) => s.form === "short") && specs.some((s) => s.form === "long"));
            const alone = await aloneAnswers(model, specs);
            specs.forEach((spec, i) => assertSameAnswer(spec, together[i], alone[i], `question ${i} (${spec.form})`));
            // Long generations: the random model rarely stops early, so most candidates ran their full budget.
            const generated = together.reduce((n, a) => n + ("candidates" in a ? a.stats.generatedTokens : 0), 0);
            assert.ok(generated > 500, `${generated} tokens generated by the short-form questions`);
            await assertNoUnhandledRejections();
        });

        it("a question submitted while others generate is decoded before they finish (engine step counter)", async () => {
            const ctx = model.context;
            const early = [0, 1, 2].map((i) => short(QUESTIONS[i], POOL.slice(i, i + 2), {ndocs: 2, mode: "always", maxNewTokens: 400, traces: true},
                `early${i}`));
            const newcomers: Spec[] = [
                short(QUESTIONS[3], POOL.slice(3, 5), {ndocs: 2, mode: "always", maxNewTokens: 8, traces: true}, "new"),
                long(QUESTIONS[4], POOL.slice(5, 7), {ndocs: 2, beamWidth: 1, mode: "always", maxNewTokens: 8})
            ];
            const retrievedAt: (number | undefined)[] = [];
            const firstFinishAt: (number | undefined)[] = [];
            const earlyRuns = early.map((spec, i) => ask(model, spec, {onEvent: (e: AnswerEvent) => {
                const steps = ctx.stats.steps;
                if (e.type === "retrieval") retrievedAt[i] = steps;
                if (e.type === "candidate") firstFinishAt[i] ??= steps;
            }}));
            await waitFor("the early questions' prompts", () => retrievedAt.filter((s) => s != null).length === early.length);
            const generatingFrom = Math.max(...retrievedAt as number[]);
            await waitFor("20 generation steps", () => ctx.stats.steps >= generatingFrom + 20);
            const submittedAt = ctx.stats.steps;
            assert.equal(firstFinishAt.filter((s) => s != null).length, 0, "no early candidate finished before the newcomers arrived");

            const newStart: number[] = [];
            const newRetrieved: number[] = [];
            const newDone: number[] = [];
            const newRuns = newcomers.map((spec, i) => ask(model, spec, {
                onStart: () => {
                    newStart[i] = ctx.stats.steps;
                },
                onEvent: (e) => {
                    if (e.type === "retrieval") newRetrieved[i] = ctx.stats.steps;
                }
            }).then((a) => {
                newDone[i] = ctx.stats.steps;
                return a;
            }));
            const fresh = await settleAll(newRuns);
            const old = await settleAll(earlyRuns);
            const firstEarlyFinish = Math.min(...firstFinishAt as number[]);
            newcomers.forEach((_, i) => {
                // The newcomer got its slots at once, its prompt was decoded (retrieval event) and it
                // finished while the early questions were still generating: it joined their steps.
                assert.ok(newStart[i] < firstEarlyFinish, `newcomer ${i} started at step ${newStart[i]}, first early finish at ${firstEarlyFinish}`);
                assert.ok(newRetrieved[i] < firstEarlyFinish, `newcomer ${i} decided at step ${newRetrieved[i]}, first early finish at ${firstEarlyFinish}`);
                assert.ok(newDone[i] < firstEarlyFinish, `newcomer ${i} answered at step ${newDone[i]}, first early finish at ${firstEarlyFinish}`);
                assert.ok(newRetrieved[i] >= submittedAt);
            });
            // ... and the early ones were really generating all along: 400 tokens each, none stopped early.
            for (const a of old as ShortFormAnswer[]) for (const c of a.candidates) assert.deepEqual([c.tokens, c.stopReason], [400, "length"]);
            assert.ok(firstEarlyFinish >= generatingFrom + 398, "the early candidates needed 399 more steps after their prompts");
            const alone = await aloneAnswers(model, [...early, ...newcomers]);
            [...early, ...newcomers].forEach((spec, i) => assertSameAnswer(spec, [...old, ...fresh][i], alone[i], `question ${i}`));
            await assertNoUnhandledRejections();
        });

        it("aborting questions mid-generation frees their slots at once; the others finish with their solo answers", async () => {
            const ctx = model.context;
            const keep: Spec[] = [
                short(QUESTIONS[0], POOL.slice(0, 3), {ndocs: 3, mode: "always", maxNewTokens: 400, traces: true}, "A"),
                long(QUESTIONS[1], POOL.slice(2, 4), {ndocs: 2, beamWidth: 2, mode: "always", maxNewTokens: 400})
            ];
            const drop: Spec[] = [
                short(QUESTIONS[2], POOL.slice(4, 7), {ndocs: 3, mode: "always", maxNewTokens: 400}, "C"),
                long(QUESTIONS[3], POOL.slice(5, 7), {ndocs: 2, beamWidth: 1, mode: "always", maxNewTokens: 400})
            ];
            const decided = new Set<string>();
            const kept = keep.map((spec, i) => track(ask(model, spec, {onEvent: (e) => {
                if (e.type === "retrieval") decided.add(`keep${i}`);
            }})));
            const controllers = drop.map(() => new AbortController());
            const candidatesOfDropped: AnswerEvent[] = [];
            const dropped = drop.map((spec, i) => track(ask(model, spec, {signal: controllers[i].signal, onEvent: (e) => {
                if (e.type === "retrieval") decided.add(`drop${i}`);
                else candidatesOfDropped.push(e);
            }})));
            await waitFor("every prompt decoded", () => decided.size === 4);
            const generatingFrom = ctx.stats.steps;
            await waitFor("10 generation steps", () => ctx.stats.steps >= generatingFrom + 10);
            assert.equal(ctx.slots.inUse, 12, "3 + 4 + 3 + 2 slots held");

            // A question waiting in the pool is aborted without ever taking a slot.
            const waitingController = new AbortController();
            const waiting = ask(model, drop[0], {signal: waitingController.signal, onStart: () => assert.fail("must not start")});
            await waitFor("the waiter to queue", () => ctx.slots.waiting === 1);
            waitingController.abort();
            await assert.rejects(waiting, rejectsWith("ABORTED"));
            assert.equal(ctx.slots.waiting, 0);

            controllers[0].abort();
            await assert.rejects(dropped[0].promise, rejectsWith("ABORTED"));
            assert.ok(!kept[0].settled() && !kept[1].settled() && !dropped[1].settled(), "the others are still generating");
            assert.equal(ctx.slots.inUse, 12 - 3, "the aborted short-form question's 3 slots are free");
            controllers[1].abort();
            await assert.rejects(dropped[1].promise, rejectsWith("ABORTED"));
            assert.ok(!kept[0].settled() && !kept[1].settled(), "the others are still generating");
            assert.equal(ctx.slots.inUse, 12 - 3 - 2, "the aborted long-form question's slots are free");
            assert.equal(candidatesOfDropped.length, 0, "the aborted questions produced no candidate");

            // The freed slots serve a new question while the kept ones still generate.
            let reusedAt = -1;
            const reuse = ask(model, short(QUESTIONS[5], POOL, {ndocs: 5, mode: "always", maxNewTokens: 6}),
                {onStart: () => {
                    reusedAt = ctx.stats.steps;
                }});
            const reused = await reuse as ShortFormAnswer;
            assert.equal(reused.candidates.length, 5);
            assert.ok(reusedAt >= 0 && !kept[0].settled() && !kept[1].settled(), "the 5 freed slots were leased before the others finished");

            const answers = await settleAll(kept.map((k) => k.promise));
            assert.equal(ctx.slots.inUse, 0);
            const alone = await aloneAnswers(model, keep);
            keep.forEach((spec, i) => assertSameAnswer(spec, answers[i], alone[i], `kept question ${i}`));
            await assertNoUnhandledRejections();
        });

        it("through the RequestScheduler: a request past its timeoutMs rejects with TIMEOUT mid-generation and frees its slots", async () => {
            const ctx = model.context;
            const slow = short(QUESTIONS[6], POOL.slice(0, 3), {ndocs: 3, mode: "always", maxNewTokens: 460}, "slow");
            const other = short(QUESTIONS[7], POOL.slice(3, 7), {ndocs: 4, mode: "always", maxNewTokens: 460, traces: true}, "other");
            // The time limit is a quarter of what the request needs on an idle context (measured
            // here, so the margin holds on any machine); with another request sharing the steps it
            // needs even longer.
            const started = performance.now();
            const [otherAlone] = await aloneAnswers(model, [other]);
            const needsMs = performance.now() - started;
            const timeoutMs = Math.max(20, Math.round(needsMs / 4));

            const scheduler = new RequestScheduler(model, {timeoutMs: 0});
            const events: string[] = [];
            const otherRun = track(scheduler.answer(other.question, other.options as ShortFormOptions));
            const slowRun = scheduler.answer(slow.question, slow.options as ShortFormOptions, {timeoutMs, onEvent: (e) => events.push(e.type)});
            await assert.rejects(slowRun, rejectsWith("TIMEOUT", /time limit/));
            assert.deepEqual(events, ["retrieval"], "it timed out after its prompt was decoded, before any candidate finished");
            // The scheduler answers at once; the flow's work is cancelled at the next step and its
            // slots come back behind it, while the other request is still generating.
            await waitFor("the timed-out request's slots", () => ctx.slots.inUse === 4 || otherRun.settled());
            assert.ok(!otherRun.settled(), "the other request is still generating");
            assert.equal(ctx.slots.inUse, 4, "only the other request's 4 slots are held");
            assertSameShort(await otherRun.promise, otherAlone as ShortFormAnswer, "the other request");
            // An aborted request through the scheduler.
            const controller = new AbortController();
            const aborted = scheduler.answer(slow.question, slow.options as ShortFormOptions, {signal: controller.signal,
                onEvent: (e) => e.type === "retrieval" && controller.abort()});
            await assert.rejects(aborted, rejectsWith("ABORTED"));
            await waitFor("the aborted request's slots", () => ctx.slots.inUse === 0);
            // A request that times out while waiting for slots leaves the queue without taking any.
            const all = await ctx.lease(12);
            const queuedRun = scheduler.answer(slow.question, slow.options as ShortFormOptions, {timeoutMs: 30,
                onEvent: () => assert.fail("must not start")});
            await waitFor("the request to queue", () => ctx.slots.waiting === 1);
            await assert.rejects(queuedRun, rejectsWith("TIMEOUT"));
            assert.equal(ctx.slots.waiting, 0, "the timed-out request left the slot queue");
            await ctx.release(...all);
            assert.equal(scheduler.stats.timedOut, 2);
            assert.equal(scheduler.stats.aborted, 1);
            assert.equal(scheduler.stats.completed, 1);
            await scheduler.close();
            await assertNoUnhandledRejections();
        });

        it("a failing question fails alone: context overflow, a throwing retriever, too many slots", async () => {
            const ctx = model.context;
            const good: Spec[] = [
                short(QUESTIONS[0], POOL.slice(0, 3), {ndocs: 3, mode: "always", maxNewTokens: 120, traces: true}, "A"),
                long(QUESTIONS[1], POOL.slice(2, 4), {ndocs: 2, beamWidth: 2, mode: "always", maxNewTokens: 120}),
                short(QUESTIONS[2], POOL.slice(4, 6), {ndocs: 2, threshold: 0.1, maxNewTokens: 90, traces: true}, "B")
            ];
            let retrieverCalls = 0;
            const goodRuns = good.map((spec) => ask(model, spec));
            const failing: [Promise<unknown>, (e: unknown) => boolean | void][] = [
                [model.answer("word ".repeat(600), {passages: POOL}), rejectsWith("CONTEXT_OVERFLOW")],
                [model.answerLong("word ".repeat(600), {passages: POOL, ndocs: 1, beamWidth: 1}), rejectsWith("CONTEXT_OVERFLOW")],
                // Fails after other questions' steps ran (the retriever is awaited before the lease).
                [model.answer("Where is Rome?", {ndocs: 2, mode: "always", retriever: async () => {
                    retrieverCalls++;
                    const target = ctx.stats.steps + 5;
                    await waitFor("5 steps", () => ctx.stats.steps >= target);
                    throw new Error("index offline (short)");
                }}), (e: unknown) => e instanceof Error && /index offline \(short\)/.test(e.message)],
                // The long form asks its retriever after it leased its slots and decoded its prompt.
                [model.answerLong("Where is Rome?", {ndocs: 2, beamWidth: 2, mode: "always", retriever: () => {
                    retrieverCalls++;
                    throw new Error("index offline (long)");
                }}), (e: unknown) => e instanceof Error && /index offline \(long\)/.test(e.message)],
                [model.answer("Where is Rome?", {passages: [...POOL, ...POOL], ndocs: 13}), rejectsWith("TOO_FEW_SLOTS", /needs 13 sequence slots/)]
            ];
            // Checks attached at once: a question that fails early must not wait for an observer.
            await Promise.all(failing.map(([promise, check]) => assert.rejects(promise, check as (e: unknown) => boolean)));
            assert.equal(retrieverCalls, 2);
            const answers = await settleAll(goodRuns);
            assert.equal(ctx.slots.inUse, 0);
            const alone = await aloneAnswers(model, good);
            good.forEach((spec, i) => assertSameAnswer(spec, answers[i], alone[i], `question ${i}`));
            await assertNoUnhandledRejections();
        });

        it("12 questions with 12 different thresholds and budgets share decode steps like 12 with equal options", async () => {
            const ctx = model.context;
            const questions = Array.from({length: 12}, (_, i) => `${QUESTIONS[i % QUESTIONS.length]} [${i}]`);
            const passageOf = (i: number) => [POOL[i % POOL.length]];
            // Different: thresholds 0.05..0.93 (p is about 0.68 on this model, so some retrieve and some
            // do not), budgets 40..84 tokens, different weights. Equal: the same threshold and the
            // longest budget for all.
            const different = questions.map((question, i): Spec => ({form: "short", question: {question, passages: passageOf(i)},
                options: {ndocs: 1, threshold: 0.05 + 0.08 * i, maxNewTokens: 40 + 4 * i, weights: {relevance: 1 + i / 10, utility: i / 20}, traces: true}}));
            const equal = questions.map((question, i): Spec => ({form: "short", question: {question, passages: passageOf(i)},
                options: {ndocs: 1, threshold: 0.2, maxNewTokens: 84, traces: true}}));

            const calls = async (specs: Spec[]) => {
                const before = ctx.stats.decodeCalls;
                const answers = await settleAll(specs.map((s) => ask(model, s)));
                return {answers, calls: ctx.stats.decodeCalls - before};
            };
            const eq = await calls(equal);
            const diff = await calls(different);
            const decisions = diff.answers.map((a) => a.retrieve.decision);
            assert.ok(decisions.includes(true) && decisions.includes(false), "the mix has questions with and without retrieval");
            // With continuous batching both runs take one step for the 12 prompts, one for the 12
            // passages (or [No Retrieval]) and one per token of the longest budget after that: about
            // 2 + 83 decode calls each, whatever the mix. A scheduler that batched only questions with
            // equal options would need one such pass per distinct option set (12x here); one that
            // waited for a wave's slowest member is not penalised by this count but is by the
            // arrival test above. The 10% margin covers a phase that a JS round trip splits over two
            // steps (a few calls), not a second pass.
            assert.ok(diff.calls <= Math.ceil(1.1 * eq.calls), `different options: ${diff.calls} decode calls, equal options: ${eq.calls}`);
            assert.ok(eq.calls <= 84 + 4, `equal options: ${eq.calls} decode calls for a longest budget of 84 tokens`);
            // and they are the answers each gets alone
            const alone: Answer[] = [];
            let aloneCalls = 0;
            for (const spec of different) {
                const before = ctx.stats.decodeCalls;
                alone.push(await ask(model, spec));
                aloneCalls += ctx.stats.decodeCalls - before;
            }
            different.forEach((spec, i) => assertSameAnswer(spec, diff.answers[i], alone[i], `question ${i}`));
            assert.ok(diff.calls * 5 < aloneCalls, `${diff.calls} decode calls together vs ${aloneCalls} one by one`);
            await assertNoUnhandledRejections();
        });

        it("long form on a small context: a first passage too long is truncated with a warning, as in short form; a search that cannot start says why", async () => {
            // Prompt (about 20 tokens) + passage (about 200) + maxNewTokens (400) > 512 per sequence.
            const passage: Passage = {id: "long", title: "Long", text: `${POOL[4].text} ${POOL[7].text} `.repeat(3)};
            const answer = await model.answerLong(QUESTIONS[1], {passages: [passage], ndocs: 1, beamWidth: 1, mode: "always", maxNewTokens: 400});
            assert.ok(answer.segments.length > 0 && answer.stats.nodes > 0, "the search ran on the truncated passage");
            assert.ok(answer.warnings?.some((w) => /^passage 0 \(long\) truncated from \d+ to \d+ tokens to fit the context of 512 tokens per sequence$/.test(w)),
                JSON.stringify(answer.warnings));
            const short = await model.answer(QUESTIONS[1], {passages: [passage], ndocs: 1, mode: "always", maxNewTokens: 400});
            assert.deepEqual(answer.warnings?.filter((w) => w.includes("truncated")), short.warnings.filter((w) => w.includes("truncated")),
                "the same rule and message as short form");
            // No room even for an empty passage: answered without retrieval, stats.stop "context" and the reason.
            const promptTokens = model.tokenize(formatPrompt(QUESTIONS[1])).length;
            const full = await model.answerLong(QUESTIONS[1], {passages: [passage], ndocs: 1, beamWidth: 1, mode: "always",
                maxNewTokens: 512 - promptTokens - 2});
            assert.equal(full.stats.stop, "context");
            assert.match(full.warnings?.join("\n") ?? "", /the first segment cannot be generated \(context full: .*\): answered without retrieval/);
            // maxDepth 1 generates no segment (depths 1..maxDepth-1), and says so.
            const shallow = await model.answerLong(QUESTIONS[1], {passages: POOL.slice(0, 2), ndocs: 2, beamWidth: 1, mode: "always", maxDepth: 1});
            assert.equal(shallow.stats.stop, "max-depth");
            assert.match(shallow.warnings?.join("\n") ?? "", /maxDepth 1 generates no segment/);
            assert.equal(model.context.slots.inUse, 0);
        });

        it("slot pool: a wide question queued behind narrow ones is not starved by narrow ones arriving after it", async () => {
            const ctx = model.context;
            const order: string[] = [];
            const narrow = (name: string, maxNewTokens: number) => ask(model, {form: "short",
                question: {question: `${QUESTIONS[name.length % QUESTIONS.length]} ${name}`, passages: POOL.slice(0, 2)},
                options: {ndocs: 2, mode: "always", maxNewTokens}}, {onStart: () => order.push(name)});
            // 6 narrow questions fill the 12 slots; different budgets so they finish one by one.
            const first = Array.from({length: 6}, (_, i) => narrow(`n${i}`, 20 + 15 * i));
            await waitFor("the first narrow questions to start", () => order.length === 6);
            const wideSpec: Spec = {form: "long", question: {question: QUESTIONS[4], passages: POOL.slice(0, 6)},
                options: {ndocs: 6, beamWidth: 2, mode: "always", maxNewTokens: 10}};
            const wide = ask(model, wideSpec, {onStart: () => order.push("wide")});
            // A stream of narrow questions keeps arriving behind the wide one: each alone would fit in
            // the slots freed so far, but none may overtake the wide question.
            const later: Promise<Answer>[] = [];
            for (let i = 0; i < 6; i++) {
                later.push(narrow(`late${i}`, 5));
                await new Promise((resolve) => setTimeout(resolve, 0));
            }
            assert.equal(ctx.slots.waiting, 7, "the wide question and the 6 late narrow ones wait");
            await settleAll([...first, wide, ...later]);
            const wideAt = order.indexOf("wide");
            assert.equal(wideAt, 6, `the wide question started right after the 6 narrow ones before it: ${order.join(" ")}`);
            assert.ok(order.slice(wideAt + 1).every((n) => n.startsWith("late")) && order.slice(0, wideAt).every((n) => !n.startsWith("late")),
                `no later narrow question started before the wide one: ${order.join(" ")}`);
            assert.equal(ctx.slots.inUse, 0);

            // The pool itself: FIFO, aborted leases.
            const pool = new SlotPool(4);
            const got: string[] = [];
            const a = await pool.lease(1);
            const b = await pool.lease(1);
            const wideLease = pool.lease(4).then((s) => {
                got.push("wide");
                return s;
            });
            const small = pool.lease(1).then((s) => {
                got.push("small");
                return s;
            });
            await new Promise((resolve) => setImmediate(resolve));
            assert.deepEqual(got, [], "2 slots are free, but the small lease waits behind the wide one");
            assert.equal(pool.waiting, 2);
            pool.give(a);
            await new Promise((resolve) => setImmediate(resolve));
            assert.deepEqual(got, []);
            pool.give(b);
            const all = await wideLease;
            assert.deepEqual(got, ["wide"]);
            assert.deepEqual(all, [0, 1, 2, 3]);
            pool.give(all);
            await small;
            assert.deepEqual(got, ["wide", "small"]);
            // an aborted signal rejects at once; aborting a waiter serves the ones behind it
            await assert.rejects(pool.lease(1, AbortSignal.abort()), rejectsWith("ABORTED"));
            await assert.rejects(ctx.lease(1, AbortSignal.abort()), rejectsWith("ABORTED"));
            assert.equal(ctx.slots.inUse, 0);
            const controller = new AbortController();
            const blocked = pool.lease(4, controller.signal);
            const behind = pool.lease(2);
            controller.abort();
            await assert.rejects(blocked, rejectsWith("ABORTED"));
            assert.equal((await behind).length, 2, "the lease behind the aborted wide one is served");
            assert.equal(pool.waiting, 0);
            await assertNoUnhandledRejections();
        });
    });

    describe("decoding context", () => {
        let model: SelfRagModel;
        let chunked: SelfRagModel;
        before(async () => {
            model = await SelfRagModel.load({modelPath: await randomModel(), sequences: 6, contextSize: 512, gpu: false});
            chunked = await SelfRagModel.load({modelPath: await randomModel(), sequences: 4, contextSize: 512, stepTokens: 16, gpu: false});
        });
        after(async () => {
            await model?.dispose();
            await chunked?.dispose();
        });

        function assertSameSegment(actual: NativeSegment, expected: NativeSegment, what: string): void {
            assert.deepEqual(Array.from(actual.tokens), Array.from(expected.tokens), `${what}: tokens`);
            assert.equal(actual.stopReason, expected.stopReason, `${what}: stop reason`);
            expected.logprobs.forEach((l, i) => near(actual.logprobs[i], l, 1e-4, `${what}: log-prob ${i}`));
            expected.reflection.forEach((r, i) => near(actual.reflection[i], r, 1e-4, `${what}: reflection ${i}`));
        }

        function assertSameRows(actual: NativeRows, expected: NativeRows, what: string): void {
            assert.deepEqual(Array.from(actual.argmax), Array.from(expected.argmax), `${what}: argmax`);
            expected.argmaxLogprob.forEach((l, i) => near(actual.argmaxLogprob[i], l, 1e-4, `${what}: argmax log-prob ${i}`));
            expected.logSumExp.forEach((l, i) => near(actual.logSumExp[i], l, 1e-4 * Math.max(1, Math.abs(l)), `${what}: logsumexp ${i}`));
            expected.reflection.forEach((r, i) => near(actual.reflection[i], r, 1e-4, `${what}: reflection ${i}`));
        }

        it("work on one slot keeps submission order: fork, prefill, generate, trim, prefill, generate submitted at once", async () => {
            const ctx = model.context;
            const prompt = model.tokenize(formatPrompt(QUESTIONS[0]));
            const evidence = model.tokenize(`[Retrieval]<paragraph>${POOL[1].title}\n${POOL[1].text}</paragraph>`, {bos: false});
            const other = model.tokenize(`[Retrieval]<paragraph>${POOL[4].title}\n${POOL[4].text}</paragraph>`, {bos: false});

            // Awaited step by step.
            const [a, b] = await ctx.lease(2);
            await ctx.prefill(a, prompt);
            await ctx.fork(a, b);
            const seqRows = await ctx.prefill(b, evidence);
            const seqFirst = await ctx.generateOne(b, 30);
            await ctx.trim(b, prompt.length);
            const seqRows2 = await ctx.prefill(b, other);
            const seqSecond = await ctx.generateOne(b, 30);
            const seqParent = await ctx.generateOne(a, 30);
            await ctx.release(a, b);

            // Everything submitted in one tick, while another slot generates: only the per-slot
            // order links the items, nothing is awaited in between.
            const [bg] = await ctx.lease(1);
            await ctx.prefill(bg, model.tokenize(formatPrompt(QUESTIONS[5])));
            const background = ctx.generateOne(bg, 200);
            const [c, d] = await ctx.lease(2);
            const work = [
                ctx.prefill(c, prompt),
                ctx.fork(c, d),
                ctx.prefill(d, evidence),
                ctx.generateOne(d, 30),
                ctx.trim(d, prompt.length),
                ctx.prefill(d, other),
                ctx.generateOne(d, 30),
                ctx.generateOne(c, 30)
            ];
            const [, , rows, first, , rows2, second, parent] = await settleAll<unknown>(work);
            assertSameRows(rows as NativeRows, seqRows, "passage rows");
            assertSameSegment(first as NativeSegment, seqFirst, "first segment");
            assertSameRows(rows2 as NativeRows, seqRows2, "rows after trim");
            assertSameSegment(second as NativeSegment, seqSecond, "segment after trim");
            assertSameSegment(parent as NativeSegment, seqParent, "the parent, untouched by its child");
            assert.equal(ctx.sequenceInfo(d).nPast, prompt.length + other.length + 29);
            await background;
            await ctx.release(bg, c, d);
            assert.equal(ctx.slots.inUse, 0);
            await assertNoUnhandledRejections();
        });

        it("an item that fails fails alone: an oversized prefill submitted with other work, a prefill past the context", async () => {
            const ctx = model.context;
            const prompt = model.tokenize(formatPrompt(QUESTIONS[1]));
            const [solo] = await ctx.lease(1);
            await ctx.prefill(solo, prompt);
            const expected = await ctx.generateOne(solo, 60);
            await ctx.release(solo);

            const [a, b, c] = await ctx.lease(3);
            const filler = model.tokenize("x", {bos: false})[0];
            // All in one tick: the 600-token prefill is refused when submitted, a's work is not.
            const good = [ctx.prefill(a, prompt), ctx.generateOne(a, 60)];
            const tooLong = ctx.prefill(b, new Int32Array(600).fill(filler));
            await assert.rejects(tooLong, rejectsWith("CONTEXT_OVERFLOW"));
            // Fits when submitted, not on top of what c already holds: fails when it is scheduled.
            await ctx.prefill(c, new Int32Array(300).fill(filler));
            const pastContext = ctx.prefill(c, new Int32Array(300).fill(filler));
            await assert.rejects(pastContext, rejectsWith("CONTEXT_OVERFLOW"));
            assert.equal(ctx.sequenceInfo(c).nPast, 300, "the failed prefill left its slot as it was");
            const [, segment] = await settleAll<unknown>(good);
            assertSameSegment(segment as NativeSegment, expected, "the slot generating next to the failures");
            await ctx.release(a, b, c);
            await assertNoUnhandledRejections();
        });

        it("a prefill longer than stepTokens is chunked, gives the unchunked rows, and the generating slot advances meanwhile", async () => {
            const ctx = chunked.context;
            assert.equal(ctx.info.stepTokens, 16);
            const long = chunked.tokenize(formatPrompt(`${POOL[4].text} ${POOL[7].text} ${POOL[6].text} `.repeat(4)));
            assert.ok(long.length >= 250 && long.length <= 400, `${long.length} prompt tokens`);
            const question = chunked.tokenize(formatPrompt(QUESTIONS[2]));

            // Reference: the same prompts on the unchunked context (stepTokens 512), each alone.
            const ref = model.context;
            assert.ok(ref.info.stepTokens >= long.length);
            const [r] = await ref.lease(1);
            const refRows = await ref.prefill(r, long, {allPositions: true});
            const refAfter = await ref.generateOne(r, 30);
            await ref.release(r);
            const [g] = await ref.lease(1);
            await ref.prefill(g, question);
            const refGen = await ref.generateOne(g, 400);
            await ref.release(g);

            const [gen, pre] = await ctx.lease(2);
            await ctx.prefill(gen, question);
            const generating = track(ctx.generateOne(gen, 400));
            await waitFor("generation to run", () => ctx.sequenceInfo(gen).nPast >= question.length + 10);
            const before = {...ctx.stats, nPast: ctx.sequenceInfo(gen).nPast};
            const rows = await ctx.prefill(pre, long, {allPositions: true});
            const after = {...ctx.stats, nPast: ctx.sequenceInfo(gen).nPast};
            assert.ok(!generating.settled(), "the generation is still running when the prefill completes");
            const chunks = Math.ceil(long.length / 16);
            // The counters are read without the loop's lock, so a snapshot may miss the step that is
            // being counted: the step bounds allow one step of slack; nPast is read under the lock.
            const steps = after.steps - before.steps;
            assert.ok(steps >= chunks - 1, `the ${long.length}-token prefill took ${steps} steps (${chunks} chunks of 16)`);
            // Every step carries at most 16 prefill tokens plus the generating slot's one.
            assert.ok(after.tokensEvaluated - before.tokensEvaluated <= 17 * (steps + 1), "no step exceeds its budget");
            // The generating slot got a token in every step that carried a prefill chunk, and both
            // slots counted as busy there.
            assert.ok(after.nPast - before.nPast >= chunks, `generation advanced ${after.nPast - before.nPast} tokens during the prefill`);
            assert.ok(after.busySlotSteps - before.busySlotSteps >= steps + chunks - 2, "both slots were busy in the chunk steps");
            assertSameRows(rows, refRows, "chunked vs unchunked rows");
            assertSameSegment(await ctx.generateOne(pre, 30), refAfter, "generation after the chunked prefill");
            assertSameSegment(await generating.promise, refGen, "the slot that generated during the chunked prefill");
            await ctx.release(gen, pre);

            // A chunked prefill cancelled part-way leaves its slot as it was before it started.
            const [slot] = await ctx.lease(1);
            await ctx.prefill(slot, question);
            const [busy] = await ctx.lease(1);
            await ctx.prefill(busy, question);
            const keepsGenerating = ctx.generateOne(busy, 200);
            const partial = ctx.prefill(slot, long.subarray(1));
            await waitFor("a few chunks", () => ctx.sequenceInfo(slot).nPast >= question.length + 48);
            ctx.cancel(slot);
            await assert.rejects(partial, rejectsWith("ABORTED"));
            assert.equal(ctx.sequenceInfo(slot).nPast, question.length, "the partial prefill was rolled back");
            assertSameSegment(await keepsGenerating, {...refGen, tokens: refGen.tokens.subarray(0, 200), logprobs: refGen.logprobs.subarray(0, 200),
                reflection: refGen.reflection.subarray(0, 200 * (refGen.reflection.length / refGen.tokens.length)), stopReason: "length"},
            "the slot generating next to the cancelled prefill");
            await ctx.release(slot, busy);
            await assertNoUnhandledRejections();
        });
    });

    describe("known answers on the designed-weights model", () => {
        const CORPUS: Passage[] = [
            {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
            {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
            {id: "r", title: "Rome", text: "Rome is the capital of Italy."}
        ];
        const LONG_PASSAGES: Passage[] = [
            {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
            {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
            {id: "r", title: "Rome", text: "Rome is a city in Italy."},
            {id: "m", title: "Madrid", text: "Madrid is in Spain."},
            {id: "l", title: "Lyon", text: "Lyon is a city of France."}
        ];
        let model: SelfRagModel;
        before(async () => {
            model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 12, contextSize: 512, gpu: false});
        });
        after(async () => model?.dispose());

        it("\"Paris.\" and \"London.\" survive concurrency with random options and arrival moments", async () => {
            const ctx = model.context;
            const rng = mulberry32(7);
            const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
            const specs: {spec: Spec, expect: string | RegExp}[] = [];
            for (let i = 0; i < 14; i++) {
                const kind = i % 4;
                const maxNewTokens = int(16, 40);
                if (kind === 0) {
                    specs.push({expect: "Paris.", spec: short("What is the capital of France?", CORPUS,
                        {ndocs: int(2, 3), threshold: 0.05 + 0.1 * rng(), maxNewTokens, traces: true}, `f${i}`)});
                } else if (kind === 1) {
                    specs.push({expect: "London.", spec: short("Say hello.", CORPUS, {ndocs: int(1, 3), maxNewTokens, traces: true}, `h${i}`)});
                } else if (kind === 2) {
                    specs.push({expect: /Paris \[\d+\]\.$/, spec: long("Tell me a bio of the capital of France.", LONG_PASSAGES, {beamWidth: 2,
                        ndocs: int(2, 5) === 2 ? 2 : 5, maxDepth: int(3, 4), maxNewTokens: 20, contextPolicy: rng() < 0.5 ? "reference" : "interleaved"})});
                } else {
                    specs.push({expect: "London.", spec: long("Say hello to a new user.", LONG_PASSAGES, {maxNewTokens})});
                }
            }
            const gaps = specs.map(() => (rng() < 0.4 ? 0 : int(1, 6)));
            let inFlight = 0;
            let arrivedWhileBusy = 0;
            const runs: Promise<Answer>[] = [];
            for (const [i, {spec}] of specs.entries()) {
                if (gaps[i] > 0) {
                    const target = ctx.stats.steps + gaps[i];
                    await waitFor(`step ${target}`, () => ctx.stats.steps >= target || inFlight === 0);
                }
                if (inFlight > 0) arrivedWhileBusy++;
                inFlight++;
                runs.push(ask(model, spec).finally(() => inFlight--));
            }
            const together = await settleAll(runs);
            assert.ok(arrivedWhileBusy >= specs.length / 2, `${arrivedWhileBusy} of ${specs.length} arrived while others ran`);
            specs.forEach(({expect}, i) => {
                if (typeof expect === "string") assert.equal(together[i].answer, expect, `question ${i}`);
                else assert.match(together[i].answer, expect, `question ${i}`);
            });
            const france = together[0] as ShortFormAnswer;
            assert.equal(france.candidates[france.best].text, "[Relevant] Paris.[Fully supported][Utility:5]</s>");
            const alone = await aloneAnswers(model, specs.map((s) => s.spec));
            specs.forEach(({spec}, i) => assertSameAnswer(spec, together[i], alone[i], `question ${i}`));
            assert.equal(ctx.slots.inUse, 0);
            await assertNoUnhandledRejections();
        });

        it("a long-form search whose retriever fails at depth 2 fails alone; the others keep their answers", async () => {
            const ctx = model.context;
            const others: Spec[] = [
                short("What is the capital of France?", CORPUS, {ndocs: 3, maxNewTokens: 24, traces: true}, "f"),
                long("Tell me a bio of the capital of France.", LONG_PASSAGES, {beamWidth: 2, ndocs: 2, maxDepth: 4, maxNewTokens: 20})
            ];
            const queries: string[] = [];
            let segmentsBeforeFailure = 0;
            const failing = model.answerLong("Tell me a bio of the capital of France.", {beamWidth: 1, ndocs: 2, maxDepth: 4, maxNewTokens: 20,
                retriever: (query) => {
                    queries.push(query);
                    if (queries.length > 1) throw new Error("index offline at depth 2");
                    return LONG_PASSAGES.slice(1, 3); // no Paris: the fixture then asks for evidence again
                }}, {onEvent: (e) => {
                if (e.type === "segment") segmentsBeforeFailure++;
            }});
            const runs = others.map((s) => ask(model, s));
            await assert.rejects(failing, /index offline at depth 2/);
            assert.equal(queries.length, 2, "the search failed at its second retrieval");
            assert.equal(segmentsBeforeFailure, 2, "after generating its depth-1 segments");
            const answers = await settleAll(runs);
            assert.equal(answers[0].answer, "Paris.");
            assert.equal(ctx.slots.inUse, 0);
            const alone = await aloneAnswers(model, others);
            others.forEach((spec, i) => assertSameAnswer(spec, answers[i], alone[i], `question ${i}`));
            await assertNoUnhandledRejections();
        });
    });

    describe("dispose while work is in flight", () => {
        it("rejects every question (running, prefilling, waiting for slots) with CONTEXT_DISPOSED; the process goes on", async () => {
            const model = await SelfRagModel.load({modelPath: await randomModel(), sequences: 8, contextSize: 512, stepTokens: 16, gpu: false});
            const ctx = model.context;
            const longPassages = [0, 1].map((i): Passage => ({id: `long${i}`, title: `Long ${i}`, text: `${POOL[4].text} ${POOL[7].text} `.repeat(3)}));
            const decided = new Set<string>();
            let longDecidedAt = Infinity;
            let longSegments = 0;
            const generating = track(model.answer({question: QUESTIONS[0], passages: POOL.slice(0, 3)}, {ndocs: 3, mode: "always", maxNewTokens: 400},
                {onEvent: (e) => e.type === "retrieval" && decided.add("short")}));
            const prefilling = track(model.answerLong({question: QUESTIONS[1], passages: longPassages}, {ndocs: 2, beamWidth: 1, mode: "always", maxNewTokens: 250},
                {onEvent: (e) => {
                    if (e.type === "retrieval") {
                        decided.add("long");
                        longDecidedAt = ctx.stats.steps;
                    } else {
                        longSegments++;
                    }
                }}));
            const [raw] = await ctx.lease(1);
            await ctx.prefill(raw, model.tokenize(formatPrompt(QUESTIONS[2])));
            const rawGeneration = track(ctx.generateOne(raw, 400));
            const queued = track(model.answer({question: QUESTIONS[3], passages: POOL}, {ndocs: 8, mode: "always"}));
            await waitFor("both questions to decide", () => decided.size === 2);
            // Dispose while the long-form passages (about 2 x 130 tokens at 16 per step) are still
            // being prefilled and the short-form candidates are generating.
            await waitFor("a few steps", () => ctx.stats.steps >= longDecidedAt + 3);
            assert.ok(ctx.stats.pendingWork > 0);
            assert.equal(longSegments, 0, "the long-form children have not finished");
            assert.equal(ctx.slots.waiting, 1, "the wide question waits for slots");
            await model.dispose();
            for (const [name, run] of [["generating", generating], ["prefilling", prefilling], ["raw generation", rawGeneration], ["queued", queued]] as const) {
                await assert.rejects(run.promise, rejectsWith("CONTEXT_DISPOSED"), name);
            }
            assert.equal(ctx.disposed, true);
            assert.equal(ctx.slots.waiting, 0, "no lease is left waiting");
            assert.throws(() => ctx.stats, rejectsWith("CONTEXT_DISPOSED"));
            await assert.rejects(async () => ctx.lease(1), rejectsWith("CONTEXT_DISPOSED")); // (it throws synchronously)
            await assert.rejects(ctx.prefill(raw, Int32Array.of(1)), rejectsWith("CONTEXT_DISPOSED"));
            await assert.rejects(model.answer(QUESTIONS[0], {passages: POOL}), rejectsWith("CONTEXT_DISPOSED"));
            await model.dispose(); // idempotent

            // The process is fine: another model answers as before.
            const other = await SelfRagModel.load({modelPath: await randomModel(), sequences: 2, contextSize: 256, gpu: false});
            try {
                const a = await other.answer({question: QUESTIONS[0], passages: POOL.slice(0, 2)}, {ndocs: 2, maxNewTokens: 12});
                assert.equal(a.candidates.length, 2);
                assert.equal(other.context.slots.inUse, 0);
            } finally {
                await other.dispose();
            }
            await assertNoUnhandledRejections();
        });
    });
});
