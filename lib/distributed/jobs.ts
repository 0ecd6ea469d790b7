// What travels through the queue of a distributed run: one job per question, carrying the
// question (with its passages, when the record has them) and every setting that changes answers,
// so a worker needs nothing but the job (and, for records without passages, an index of its own).
// Job ids are derived from the run and the question, so enqueuing a question twice (a restarted
// coordinator) finds the job already there instead of adding a second one.
import {createHash} from "node:crypto";
import path from "node:path";
import type {EvalItem} from "../eval/EvalItems.js";
import type {EvalRecord} from "../eval/Evaluation.js";
import type {MetricName} from "../eval/metrics.js";
import type {LongFormOptions} from "../selfrag/LongForm.js";
import {API_SURFACE, CLI_SURFACE, planQuestion, slotsNeeded, type QuestionPlan, type Retriever, type Surface} from "../selfrag/plan.js";
import type {Profile} from "../selfrag/profiles.js";
import type {Task} from "../selfrag/prompts.js";
import type {ShortFormOptions} from "../selfrag/ShortForm.js";

/** The BullMQ job name of a question. */
export const ANSWER_JOB = "answer";

/** Every option of a run that changes its answers or records (what `selfrag eval` was given). */
export interface RunSettings {
    task: Task;
    profile: Profile;
    long: boolean;
    /** Keep what the reference scripts' output file needs in each record. */
    referenceFields: boolean;
    metrics: MetricName[];
    shortForm: Omit<ShortFormOptions, "passages" | "retriever" | "task" | "profile">;
    longForm: Omit<LongFormOptions, "passages" | "retriever" | "task" | "profile">;
    /** How the coordinator's caller spelled the options ("cli": flags), so a worker's errors name them as a single-process run does. */
    spelling?: "api" | "cli";
}

/**
 * A question as a job carries it: the evaluation item (with `where`, its file and line, for error
 * records), and of the input record only what the output needs (its `metadata`; the whole record
 * when the reference output format is asked for).
 */
export type JobItem = EvalItem;

export interface AnswerJobData {
    /** The run's id (`runId`). */
    run: string;
    /** The coordinator's model (`modelFingerprint`): a worker holding another model refuses the job. */
    fingerprint: string;
    settings: RunSettings;
    item: JobItem;
}

/** A worker's answer: the record before scoring (the coordinator scores it, with its metrics). */
export type AnswerJobResult = EvalRecord;

/**
 * The id of a run: a hash of the input file's absolute path, every setting that changes answers
 * and the model fingerprint. The same command over the same file gives the same id (and so the
 * same job ids); any other option gives another run.
 */
export function runId(input: string, settings: RunSettings, fingerprint: string): string {
    const identity = JSON.stringify({input: path.resolve(input), settings, fingerprint});
    return createHash("sha256").update(identity).digest("hex").slice(0, 16);
}

/**
 * A question's job id: the run id and the question's id; the n-th repeat of an id within the file
 * (n >= 2) gets `#n`, so every record of the file is its own job.
 */
export function jobId(run: string, questionId: string, occurrence = 1): string {
    return `${run}-${questionId}${occurrence > 1 ? `#${occurrence}` : ""}`;
}

/** The item a job carries for an evaluation item. */
export function jobItem(item: EvalItem, referenceFields: boolean): JobItem {
    const {record, ...rest} = item;
    const metadata = record.metadata;
    return {...rest, record: referenceFields ? record : metadata !== undefined ? {metadata} : {}};
}

/** A job's settings are `planOptions` of the coordinator's plan: named in errors as its caller spelled them. */
const JOB_SURFACES: Readonly<Record<"api" | "cli", Surface>> = {api: API_SURFACE, cli: CLI_SURFACE};

/** A job's question settings as a plan (the coordinator wrote them with `planOptions`). */
export function jobPlan(settings: Pick<RunSettings, "long" | "shortForm" | "longForm" | "task" | "profile" | "spelling">, retriever?: Retriever): QuestionPlan {
    const form = settings.long ? "long" : "short";
    return planQuestion(form, {profile: settings.profile, task: settings.task, ...(settings.long ? settings.longForm : settings.shortForm),
        ...(retriever != null ? {retriever} : {})}, JOB_SURFACES[settings.spelling ?? "api"]);
}

/** Sequence slots one question of these settings may hold (see `slotsNeeded`). */
export function slotsPerQuestion(settings: Pick<RunSettings, "long" | "shortForm" | "longForm" | "task" | "profile">): number {
    return slotsNeeded(jobPlan(settings));
}

/**
 * A failed attempt's reason as BullMQ stores it (one string): `[CODE] message`, so the error record
 * written after the last attempt keeps the code the worker saw.
 */
export function encodeFailure(code: string, message: string): string {
    return `[${code}] ${message}`;
}

/** The code and message of a failed job's reason (WORKER_LOST for BullMQ's stalled-job limit). */
export function decodeFailure(reason: string | undefined): {code: string, message: string} {
    const m = /^\[([A-Z][A-Z0-9_]+)\] ([\s\S]*)$/.exec(reason ?? "");
    if (m != null) return {code: m[1], message: m[2]};
    if (reason != null && /stalled more than allowable limit/.test(reason)) {
        return {code: "WORKER_LOST", message: `every worker that took this question died or stopped answering before finishing it (${reason})`};
    }
    return {code: "INTERNAL", message: reason ?? "the job failed without a reason"};
}
