// Batch inference over an evaluation file: every question answered (short or long form), one
// output record per question as soon as it (and every question before it) is done, the reference's metric over the gold
// answers, and a summary.
//
// Throughput: up to `batchSize` questions are in flight at once through a RequestScheduler; the
// engine's step loop decodes all of them together, and as each question finishes the next one
// starts (no batch waits for its slowest member). A question that fails (a prompt longer than the
// context) gets an error record and the run goes on; the others are unaffected.
import {SelfRagError, requirePositiveInteger} from "../errors.js";
import {readJsonRecords} from "../jsonRecords.js";
import type {LongFormOptions, Retriever} from "../selfrag/LongForm.js";
import {checkProfile, type Profile} from "../selfrag/profiles.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "../selfrag/prompts.js";
import {RequestScheduler} from "../serving/RequestScheduler.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import type {ShortFormOptions} from "../selfrag/ShortForm.js";
import {toEvalItem, type EvalItem} from "./EvalItems.js";
import {accuracy, exactMatch, match, scoredPrediction, strEm, tokenF1, type MetricName} from "./metrics.js";

export interface EvaluationOptions {
    /** The reference's task name: its instruction, ARC choices, PubHealth's true/false (default "none"). */
    task?: Task;
    /** Default: str_em in long form, match otherwise (the scripts' metric for every short-form task). */
    metric?: MetricName;
    /** Several metrics: each record gets `scores` for all, `score` for the first; the summary a mean of each. */
    metrics?: readonly MetricName[];
    /** "reference": the scripts' strings and defaults for reading records, answering and scoring (see `Profile`). */
    profile?: Profile;
    /** Keep in each record what the reference scripts' output file needs (`reference` field); see `writeReferenceOutput`. */
    referenceFields?: boolean;
    long?: boolean;
    /** Short-form settings (ndocs, mode, threshold, maxNewTokens, weights, closedSet). */
    shortForm?: Omit<ShortFormOptions, "passages" | "retriever" | "task">;
    /** Long-form settings (ndocs, beamWidth, maxDepth, maxNewTokens, ignoreCont, ...). */
    longForm?: Omit<LongFormOptions, "passages" | "retriever" | "task">;
    /** Passages for questions whose record carries none (e.g. an index's asRetriever()). */
    retriever?: Retriever;
    /** Questions in flight at once (64): as one finishes, the next starts. */
    batchSize?: number;
    /** Stop after this many questions (counting skipped ones). */
    limit?: number;
    /** Ids already answered (resuming): not run again. */
    skip?: ReadonlySet<string>;
    /** Fail at the first malformed record instead of reporting and skipping it. */
    strict?: boolean;
    signal?: AbortSignal;
    /** Each question's record, in input order, as soon as it and every earlier question are done. */
    onRecord?: (record: EvalRecord) => void | Promise<void>;
    onMalformed?: (message: string) => void;
    onProgress?: (progress: EvalSummary) => void;
}

/** One output line. */
export interface EvalRecord {
    id: string;
    question: string;
    /** The answer as post-processed for scoring ("output" in ALCE's format for long form). */
    prediction: string;
    golds?: string[];
    /** Every metric asked for (absent without gold answers, or on error). */
    scores?: Partial<Record<MetricName, number>>;
    /** The dataset's own fields (FlashRAG's `metadata`), kept as they are. */
    metadata?: unknown;
    /** The first metric for this question (absent without gold answers, or on error). */
    score?: number;
    retrieve?: {decision: boolean, p: number};
    /** Short form: the passage of the chosen candidate. Long form: the cited passages (ALCE "docs"). */
    passage?: Passage | null;
    docs?: Passage[];
    error?: {code: string, message: string};
    /** With `referenceFields`: what the scripts' output file holds for this question. */
    reference?: ReferenceFields;
}

export interface ReferenceFields {
    /** The input record as read. */
    record: Record<string, unknown>;
    /** Short form: the prompt string, and each candidate as `all_results["retrieval_i"]`. */
    prompt?: string;
    results?: Record<string, {pred: string, score: number, ctx: Passage}>;
    /** Long form: the best path's raw segments, root first. */
    intermediate?: string[];
}

export interface EvalSummary {
    metric: MetricName;
    /** Questions answered in this run (errors excluded). */
    answered: number;
    errors: number;
    /** Skipped because already answered (resume). */
    skipped: number;
    malformed: number;
    /** Answered questions with gold answers, and their mean metric (null when none). */
    scored: number;
    mean: number | null;
    /** Every metric asked for, in order, with the questions it scored and its mean. */
    metrics: {metric: MetricName, scored: number, mean: number | null}[];
    /** Questions read so far (answered, failed or skipped), for progress lines. */
    seen: number;
    /** Fraction of answered questions where the model retrieved. */
    retrievalRate: number | null;
    seconds: number;
    questionsPerSecond: number;
}

export async function runEvaluation(model: SelfRagModel, file: string, options: EvaluationOptions = {}): Promise<EvalSummary> {
    const started = Date.now();
    const task = options.task ?? "none";
    const profile = checkProfile(options.profile);
    const metrics: MetricName[] = options.metrics != null && options.metrics.length > 0 ? [...options.metrics]
        : [options.metric ?? (options.long ? "str_em" : "match")];
    const metric = metrics[0];
    const perMetric = metrics.map((m) => ({metric: m, scored: 0, sum: 0}));
    const batchSize = requirePositiveInteger("batchSize", options.batchSize ?? 64, 1 << 16);
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const scheduler = new RequestScheduler(model, {maxQueue: batchSize});
    const totals = {answered: 0, errors: 0, skipped: 0, malformed: 0, scored: 0, scoreSum: 0, retrieved: 0, seen: 0};
    const summary = (): EvalSummary => {
        const seconds = (Date.now() - started) / 1000;
        return {
            metric, answered: totals.answered, errors: totals.errors, skipped: totals.skipped, malformed: totals.malformed,
            scored: totals.scored, mean: totals.scored > 0 ? totals.scoreSum / totals.scored : null,
            metrics: perMetric.map((m) => ({metric: m.metric, scored: m.scored, mean: m.scored > 0 ? m.sum / m.scored : null})),
            seen: totals.seen,
            retrievalRate: totals.answered > 0 ? totals.retrieved / totals.answered : null,
            seconds, questionsPerSecond: totals.answered / Math.max(seconds, 1e-3)
        };
    };

    // A sliding window: up to batchSize questions in flight; as each finishes another starts, and
    // finished records are written in input order as soon as every earlier question is done too.
    type Entry = {item: EvalItem, outcome?: PromiseSettledResult<EvalRecord>};
    const window: Entry[] = [];
    let inFlight = 0;
    let wake: (() => void) | undefined;
    const finishedOne = () => new Promise<void>((resolve) => {
        wake = resolve;
    });
    const start = (item: EvalItem) => {
        const entry: Entry = {item};
        inFlight++;
        window.push(entry);
        void answerOne(scheduler, item, task, options).then((value) => ({status: "fulfilled" as const, value}),
            (reason: unknown) => ({status: "rejected" as const, reason})).then((outcome) => {
            entry.outcome = outcome;
            inFlight--;
            wake?.();
        });
    };
    const writeReady = async () => {
        while (window.length > 0 && window[0].outcome != null) await write(window.shift()!);
    };
    const write = async ({item, outcome}: Entry) => {
        {
            let record: EvalRecord;
            if (outcome!.status === "rejected") {
                const e = outcome!.reason as Error & {code?: string};
                if (e.code === "ABORTED" || e.code === "SCHEDULER_CLOSED") throw e;
                record = {id: item.id, question: item.question, prediction: "", golds: item.golds,
                    error: {code: e.code ?? "INTERNAL", message: `${item.where}: ${e.message}`}};
                totals.errors++;
            } else {
                record = outcome!.value;
                const scores: Partial<Record<MetricName, number>> = {};
                perMetric.forEach((m) => {
                    const value = scoreOf(record, item, m.metric, task, profile);
                    if (value == null) return;
                    scores[m.metric] = value;
                    m.scored++;
                    m.sum += value;
                });
                record.score = scores[metric];
                if (metrics.length > 1 && Object.keys(scores).length > 0) record.scores = scores;
                const metadata = item.record.metadata;
                if (metadata !== undefined) record.metadata = metadata;
                totals.answered++;
                if (record.retrieve?.decision) totals.retrieved++;
                if (record.score != null) {
                    totals.scored++;
                    totals.scoreSum += record.score;
                }
            }
            await options.onRecord?.(record);
        }
        options.onProgress?.(summary());
    };


    try {
        let seen = 0;
        for await (const entry of readJsonRecords(file)) {
            if (seen >= limit) break;
            if (options.signal?.aborted) throw new SelfRagError("the evaluation was interrupted; the records written so far are complete", "ABORTED");
            const item = entry.kind === "record" ? toEvalItem(entry.value, entry.where, entry.line, task, profile) : entry.message;
            if (typeof item === "string") {
                if (options.strict) throw new SelfRagError(`${item} (--strict: stopping at the first malformed record)`, "INVALID_JSONL");
                totals.malformed++;
                options.onMalformed?.(item);
                continue;
            }
            seen++;
            totals.seen = seen;
            if (options.skip?.has(item.id)) {
                totals.skipped++;
                continue;
            }
            start(item);
            await writeReady();
            while (inFlight >= batchSize) {
                await finishedOne();
                await writeReady();
            }
        }
        while (window.length > 0) {
            if (window[0].outcome == null) await finishedOne();
            await writeReady();
        }
    } finally {
        await scheduler.close();
    }
    return summary();
}

/** Totals over output records (a whole resumed file, say): the mean metric, retrieval rate and errors. */
export function summarizeRecords(records: readonly EvalRecord[]): {records: number, errors: number, scored: number, mean: number | null,
    retrievalRate: number | null} {
    const ok = records.filter((r) => r.error == null);
    const scored = ok.filter((r) => typeof r.score === "number");
    return {
        records: records.length, errors: records.length - ok.length, scored: scored.length,
        mean: scored.length > 0 ? scored.reduce((a, r) => a + r.score!, 0) / scored.length : null,
        retrievalRate: ok.length > 0 ? ok.filter((r) => r.retrieve?.decision).length / ok.length : null
    };
}

async function answerOne(scheduler: RequestScheduler, item: EvalItem, task: Task, options: EvaluationOptions): Promise<EvalRecord> {
    const retriever = item.passages == null ? options.retriever : undefined;
    const profile = options.profile;
    if (options.long) {
        const result = await scheduler.answerLong({question: item.question, passages: item.passages},
            {...options.longForm, profile, task, retriever});
        return {id: item.id, question: item.question, prediction: result.answer, golds: item.golds, retrieve: result.retrieve, docs: result.docs,
            ...(options.referenceFields ? {reference: {record: item.record, ...(result.intermediate != null ? {intermediate: result.intermediate} : {})}} : {})};
    }
    const result = await scheduler.answer({id: item.id, question: item.question, passages: item.passages, task, choices: item.choices},
        {...options.shortForm, profile, task, retriever});
    const best = result.candidates[result.best];
    const record: EvalRecord = {id: item.id, question: item.question, prediction: result.answer, golds: item.golds, retrieve: result.retrieve,
        passage: best?.passage ?? null};
    if (options.referenceFields) {
        record.reference = {
            record: item.record,
            prompt: formatPrompt(taskInstruction(task, item.question, item.choices, {profile})),
            results: result.retrieve.decision
                ? Object.fromEntries(result.candidates.map((c, i) => [`retrieval_${i}`, {pred: c.text, score: c.score, ctx: c.passage!}])) : {}
        };
    }
    return record;
}

function scoreOf(record: EvalRecord, item: EvalItem, metric: MetricName, task: Task, profile: Profile): number | undefined {
    if (metric === "str_em") return item.qaPairs != null ? strEm(record.prediction, item.qaPairs) : undefined;
    if (item.golds == null || item.golds.length === 0) return undefined;
    const prediction = scoredPrediction(record.prediction, task, {profile, metric});
    switch (metric) {
        case "match": return match(prediction, item.golds);
        case "accuracy": return accuracy(prediction, item.golds);
        case "em": return exactMatch(prediction, item.golds);
        case "f1": return tokenF1(prediction, item.golds);
    }
}
