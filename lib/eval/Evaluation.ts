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
import {planQuestion, type QuestionPlan} from "../selfrag/plan.js";
import type {Profile, ProfileStrategy} from "../selfrag/profiles.js";
import {formatPrompt, taskInstruction, type Passage, type Task} from "../selfrag/prompts.js";
import {RequestScheduler} from "../serving/RequestScheduler.js";
import type {SelfRagModel} from "../SelfRagModel.js";
import type {ShortFormOptions} from "../selfrag/ShortForm.js";
import {toEvalItem, type EvalItem} from "./EvalItems.js";
import type {TraceRecord} from "../selfrag/traces.js";
import {replayTrace, type ReplayTrace} from "./Tune.js";
import {accuracy, exactMatch, match, scoredPrediction, strEm, tokenF1, type MetricName} from "./metrics.js";

export interface EvaluationOptions {
    /** The reference's task name: its instruction, ARC choices, PubHealth's true/false (default "none"). */
    task?: Task;
    /** Default: str_em in long form, match otherwise (the scripts' metric for every short-form task). */
    metric?: MetricName;
    /** Several metrics: each record gets `scores` for all, `score` for the first; the summary a mean of each. */
    metrics?: readonly MetricName[];
    /** The reference profile: the scripts' strings and defaults for reading records, answering and scoring (see `Profile`). */
    profile?: Profile;
    /**
     * The questions' plan, made once by the caller (the CLI plans its flags, naming them as flags):
     * then `task`, `profile`, `long`, `shortForm`, `longForm` and `retriever` are the plan's.
     */
    plan?: QuestionPlan;
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
    /** Stop after this many questions (counting skipped ones); at least 1. */
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
    /**
     * Each answered question's replay trace (see `tune`), in input order just before its record;
     * the plan must answer both branches with traces (`traces: true, bothBranches: true`, what
     * `selfrag eval --save-traces` sets).
     */
    onTrace?: (trace: ReplayTrace) => void | Promise<void>;
}

/** Where an answered record carries its question's trace to `onTrace` (never written: JSON skips symbol keys). */
export const TRACE = Symbol("selfrag.eval.trace");

/** One output line. */
export interface EvalRecord {
    [TRACE]?: TraceRecord;
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

/** The plan every question of an evaluation is answered with: the one given, else its options planned once. */
export function evaluationPlan(options: EvaluationOptions): QuestionPlan {
    if (options.plan != null) return planQuestion(options.plan.form, options.plan);
    const settings = options.long ? options.longForm : options.shortForm;
    return planQuestion(options.long ? "long" : "short", {
        ...settings, ...(options.profile !== undefined ? {profile: options.profile} : {}), ...(options.task !== undefined ? {task: options.task} : {}),
        ...(options.retriever != null ? {retriever: options.retriever} : {})
    });
}

export async function runEvaluation(model: SelfRagModel, file: string, options: EvaluationOptions = {}): Promise<EvalSummary> {
    const plan = evaluationPlan(options);
    const task = plan.task;
    const profile = plan.profile;
    const metrics = evaluationMetrics(options);
    const batchSize = requirePositiveInteger("batchSize", options.batchSize ?? 64, 1 << 16);
    const limit = options.limit != null ? requirePositiveInteger("limit", options.limit) : Number.POSITIVE_INFINITY;
    const scheduler = new RequestScheduler(model, {maxQueue: batchSize});
    const totals = new EvalTally(metrics);
    const summary = () => totals.summary();

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
        void answerOne(scheduler, item, plan, options.referenceFields ?? false).then((value) => ({status: "fulfilled" as const, value}),
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
        let record: EvalRecord;
        if (outcome!.status === "rejected") {
            const e = outcome!.reason as Error & {code?: string};
            if (e.code === "ABORTED" || e.code === "SCHEDULER_CLOSED") throw e;
            record = errorRecord(item, {code: e.code ?? "INTERNAL", message: e.message});
        } else {
            record = scoreRecord(outcome!.value, item, metrics, task, profile);
            const trace = record[TRACE];
            if (trace != null && plan.form === "short") await options.onTrace?.(replayTrace(trace, item, plan, task, record.prediction));
        }
        totals.count(record);
        await options.onRecord?.(record);
        options.onProgress?.(summary());
    };

    let firstMalformed: string | undefined;
    try {
        let seen = 0;
        for await (const entry of readJsonRecords(file)) {
            if (seen >= limit) break;
            if (options.signal?.aborted) throw new SelfRagError("the evaluation was interrupted; the records written so far are complete", "ABORTED");
            const item = entry.kind === "record" ? toEvalItem(entry.value, entry.where, entry.line, task, profile) : entry.message;
            if (typeof item === "string") {
                if (options.strict) throw new SelfRagError(`${item} (--strict: stopping at the first malformed record)`, "INVALID_JSONL");
                totals.malformed++;
                firstMalformed ??= item;
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
        if (seen === 0) throw noQuestionsError(file, totals.malformed, firstMalformed);
    } finally {
        await scheduler.close();
    }
    return summary();
}

/**
 * The failure of an evaluation whose input holds no question it can read (empty, or every record
 * malformed), as `index build` fails on such a corpus: EMPTY_CORPUS, not a run of nothing.
 * A resumed run whose questions were all answered before did read them, and is not this.
 */
export function noQuestionsError(file: string, malformed: number, firstMalformed?: string): SelfRagError {
    return new SelfRagError(`${file} holds no question to evaluate` +
        (malformed > 0 ? ` (all ${malformed} records were malformed; first: ${firstMalformed})` : ""), "EMPTY_CORPUS");
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

/**
 * The metrics a run scores with: `metrics` when given, else `metric`, else str_em in long form and
 * match otherwise; the first is each record's `score`.
 */
export function evaluationMetrics(options: Pick<EvaluationOptions, "metric" | "metrics" | "long">): MetricName[] {
    return options.metrics != null && options.metrics.length > 0 ? [...options.metrics] : [options.metric ?? (options.long ? "str_em" : "match")];
}

/**
 * The running totals of an evaluation (answered, errors, each metric's mean, retrieval rate) and
 * its summary; a single-process run and a distributed coordinator count records the same way:
 *
 * ```ts
 * const tally = new EvalTally(["match"]);
 * tally.count(scoreRecord(answered, item, ["match"], "popqa", "default"));
 * tally.summary().mean;
 * ```
 */
export class EvalTally {
    public answered = 0;
    public errors = 0;
    public skipped = 0;
    public malformed = 0;
    /** Questions read so far (answered, failed or skipped). */
    public seen = 0;
    private scored = 0;
    private scoreSum = 0;
    private retrieved = 0;
    private readonly started = Date.now();
    private readonly perMetric: {metric: MetricName, scored: number, sum: number}[];

    public constructor(public readonly metrics: readonly MetricName[]) {
        this.perMetric = metrics.map((m) => ({metric: m, scored: 0, sum: 0}));
    }

    /** One finished record: scored by `scoreRecord`, or an `errorRecord`. */
    public count(record: EvalRecord): void {
        if (record.error != null) {
            this.errors++;
            return;
        }
        this.answered++;
        if (record.retrieve?.decision) this.retrieved++;
        for (const m of this.perMetric) {
            const value = record.scores != null ? record.scores[m.metric] : m.metric === this.metrics[0] ? record.score : undefined;
            if (value == null) continue;
            m.scored++;
            m.sum += value;
        }
        if (record.score != null) {
            this.scored++;
            this.scoreSum += record.score;
        }
    }

    public summary(): EvalSummary {
        const seconds = (Date.now() - this.started) / 1000;
        return {
            metric: this.metrics[0], answered: this.answered, errors: this.errors, skipped: this.skipped, malformed: this.malformed,
            scored: this.scored, mean: this.scored > 0 ? this.scoreSum / this.scored : null,
            metrics: this.perMetric.map((m) => ({metric: m.metric, scored: m.scored, mean: m.scored > 0 ? m.sum / m.scored : null})),
            seen: this.seen,
            retrievalRate: this.answered > 0 ? this.retrieved / this.answered : null,
            seconds, questionsPerSecond: this.answered / Math.max(seconds, 1e-3)
        };
    }
}

/**
 * Completes an answered question's record (from `answerOne`) as the output file holds it: each
 * metric's score, `score` (the first metric), `scores` when several, and the dataset's metadata.
 */
export function scoreRecord(record: EvalRecord, item: Pick<EvalItem, "golds" | "qaPairs" | "record">, metrics: readonly MetricName[],
    task: Task, profile: ProfileStrategy): EvalRecord {
    const scores: Partial<Record<MetricName, number>> = {};
    for (const m of metrics) {
        const value = scoreOf(record, item, m, task, profile);
        if (value != null) scores[m] = value;
    }
    record.score = scores[metrics[0]];
    if (metrics.length > 1 && Object.keys(scores).length > 0) record.scores = scores;
    const metadata = item.record.metadata;
    if (metadata !== undefined) record.metadata = metadata;
    return record;
}

/** The record of a question that could not be answered: its error's code and message, prefixed with where it is. */
export function errorRecord(item: Pick<EvalItem, "id" | "question" | "golds" | "where">, error: {code: string, message: string}): EvalRecord {
    return {id: item.id, question: item.question, prediction: "", golds: item.golds, error: {code: error.code, message: `${item.where}: ${error.message}`}};
}

/**
 * One question answered through a scheduler (sharing decode steps with whatever else is in
 * flight), as its output record before scoring (see `scoreRecord`).
 */
export async function answerOne(scheduler: RequestScheduler, item: EvalItem, plan: QuestionPlan, referenceFields: boolean): Promise<EvalRecord> {
    const passages = item.passages != null ? {passages: item.passages} : {};
    if (plan.form === "long") {
        const result = await scheduler.answerLong({id: item.id, question: item.question, ...passages}, plan);
        return {id: item.id, question: item.question, prediction: result.answer, golds: item.golds, retrieve: result.retrieve, docs: result.docs,
            ...(referenceFields ? {reference: {record: item.record, ...(result.intermediate != null ? {intermediate: result.intermediate} : {})}} : {})};
    }
    const result = await scheduler.answer({id: item.id, question: item.question, ...passages, ...(item.choices != null ? {choices: item.choices} : {})}, plan);
    const best = result.candidates[result.best];
    const record: EvalRecord = {id: item.id, question: item.question, prediction: result.answer, golds: item.golds, retrieve: result.retrieve,
        passage: best?.passage ?? null};
    // Not a field of the output line (a symbol key: JSON leaves it out); runEvaluation hands it to onTrace.
    if (result.trace != null) record[TRACE] = result.trace;
    if (referenceFields) {
        record.reference = {
            record: item.record,
            prompt: formatPrompt(taskInstruction(plan.task, item.question, item.choices, {profile: plan.profile})),
            results: result.retrieve.decision
                ? Object.fromEntries(result.candidates.map((c, i) => [`retrieval_${i}`, {pred: c.text, score: c.score, ctx: c.passage!}])) : {}
        };
    }
    return record;
}

function scoreOf(record: EvalRecord, item: Pick<EvalItem, "golds" | "qaPairs">, metric: MetricName, task: Task, profile: ProfileStrategy): number | undefined {
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
