import fs from "node:fs";
import {SelfRagError, invalidParameterError, requireOneOf} from "../errors.js";
import {toEvalItem} from "../eval/EvalItems.js";
import {readJsonRecords} from "../jsonRecords.js";
import {noQuestionsError, runEvaluation, summarizeRecords, type EvalRecord, type EvalSummary, type EvaluationOptions} from "../eval/Evaluation.js";
import {checkRedisUrl} from "../distributed/redisUrl.js";
import {METRICS, type MetricName} from "../eval/metrics.js";
import type {ReplayTrace} from "../eval/Tune.js";
import {describePresets, PAPER_PRESETS, presetOptions} from "../eval/paperPresets.js";
import {formatReferenceOutput, OUTPUT_FORMATS, referenceOutputPath} from "../eval/referenceOutput.js";
import type {ProfileStrategy} from "../selfrag/profiles.js";
import type {Task} from "../selfrag/prompts.js";
import {CACHE_FLAGS_HELP, cacheFlags, cacheOptions, parseCommand, refuseTogether, requireWith} from "./contract.js";
import {PassageIndex} from "../retrieval/PassageIndex.js";
import {SelfRagModel} from "../SelfRagModel.js";
import {integerOption, requireModel} from "./options.js";
import {CLI_SURFACE, optionsFromFlags, planOptions, planQuestion, questionFlagOptions, questionOptionsHelp, slotsNeeded} from "../selfrag/plan.js";

const help = () => `Usage: selfrag eval [--model FILE] --input FILE --output FILE.jsonl [--task T] [options]
       selfrag eval --paper popqa|arc_c|pubhealth|asqa|factscore --input FILE --output FILE.jsonl [options]
       selfrag eval --paper list

Answers every question of an evaluation file (many in flight at once, sharing every decode step)
and scores the answers with the Self-RAG
scripts' metric. Reads the released evaluation data as is: PopQA / TriviaQA / PubHealth
({"question", "answers", "ctxs"}), ARC-Challenge ({"question", "choices", "answerKey", "ctxs"}),
ASQA ({"question", "qa_pairs", "docs"}); JSONL or a JSON array.
  --paper NAME          the Self-RAG README's command for that dataset (ndocs, max-new-tokens, threshold,
                        weights and use flags, mode, task, max-depth) under --profile reference;
                        --paper list prints them; any flag given overrides the preset
  --output-format F     jsonl (default) | reference: also write the scripts' output file next to --output
                        (FILE.reference.json; FactScore: FILE.reference.jsonl)
  --input FILE          the evaluation file (.jsonl or .json)
  --output FILE         one JSONL record per question: {"id", "question", "prediction", "golds", "score",
                        "retrieve", "passage" | "docs", "error"?}, in input order as questions finish
  --resume              keep the records already in --output and answer only the missing questions
  --metric M[,M...]     match (default; any gold string in the prediction) | accuracy | str_em (default with --long)
                        | em (SQuAD exact match) | f1 (SQuAD token F1); a list scores each, the first is "score"
  --index DIR           retrieve for questions whose record has no passages
  --limit N             the first N questions only
  --batch N             questions in flight at once (64); as one finishes the next starts
  --strict              stop at the first malformed record (default: report it, skip it; an input
                        with no readable question at all fails with EMPTY_CORPUS)
  --json                print the summary as JSON
  --save-traces FILE    also write one JSONL line per question for \`selfrag tune\` (short form): both branches are
                        answered whatever the decision (one slot more per question and the other branch's tokens)
  --long                long form (the options marked "long form" below need it)
  --sequences N (slots; default: enough for 4 questions) --context-size N (2048) --threads N --cpu
  ${CACHE_FLAGS_HELP}
  --redis URL           distributed: enqueue every question in the Redis at redis://HOST:PORT for
                        \`selfrag worker\` processes (any number, any machines) and write each record as its
                        question is answered (in that order); --model is the workers' model (they refuse
                        another), --resume continues after this process dies; --index, --batch and the
                        engine options are the workers' (see \`selfrag worker --help\`)
  --queue NAME          the queue (selfrag), the workers' --queue
The questions' options (the same as the library's and the server's, by their flag names; --task also
says how records are read and scored):
${questionOptionsHelp()}
Long-form options without --long are refused. Records without passages are answered without
retrieval unless --index is given (one warning per run says how many).`;

export async function evalCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag eval", help, {args, options: {
        model: {type: "string"}, input: {type: "string"}, output: {type: "string"}, resume: {type: "boolean"},
        metric: {type: "string"}, index: {type: "string"}, limit: {type: "string"}, batch: {type: "string"}, strict: {type: "boolean"},
        json: {type: "boolean"}, long: {type: "boolean"}, sequences: {type: "string"}, "context-size": {type: "string"},
        threads: {type: "string"}, cpu: {type: "boolean"}, paper: {type: "string"}, "output-format": {type: "string"},
        redis: {type: "string"}, queue: {type: "string"}, "save-traces": {type: "string"}, ...cacheFlags, ...questionFlagOptions()
    }});
    if (parsed == null) return;
    const values = parsed.values as EvalValues;
    if (values.paper === "list") {
        console.log(describePresets());
        return;
    }
    const preset = values.paper != null ? PAPER_PRESETS[values.paper] : undefined;
    if (values.paper != null && preset == null) throw invalidParameterError("--paper", `list | ${Object.keys(PAPER_PRESETS).join(" | ")}`, values.paper);
    const outputFormat = requireOneOf("--output-format", values["output-format"] ?? "jsonl", OUTPUT_FORMATS);
    const long = values.long ?? preset?.long ?? false;
    // The questions' plan: the preset's settings under its profile, the flags over them.
    const flagged = optionsFromFlags(values);
    const saveTraces = values["save-traces"];
    refuseTogether("--save-traces", saveTraces, "--long", long, "a long-form tree search cannot be replayed: traces are written for short form only");
    const plan = planQuestion(long ? "long" : "short", {
        ...(preset != null ? presetOptions(preset) : {}), ...flagged,
        weights: {...(preset?.weights ?? {}), ...(flagged.weights as object | undefined)},
        // The traces `selfrag tune` replays: both branches of every question.
        ...(saveTraces != null ? {traces: true, bothBranches: true} : {})
    }, CLI_SURFACE);
    if (values.input == null) throw invalidParameterError("--input", "an evaluation file (.jsonl or .json)", values.input);
    if (!fs.existsSync(values.input)) throw new SelfRagError(`evaluation file not found: ${values.input}`, "CORPUS_NOT_FOUND");
    if (values.output == null) throw invalidParameterError("--output", "the JSONL file to write", values.output);
    const {task, profile, mode} = plan;
    const metricList = values.metric?.split(",").map((m) => m.trim()).filter((m) => m !== "");
    for (const m of metricList ?? []) {
        if (!METRICS.includes(m as MetricName)) throw invalidParameterError("--metric", `a comma-separated list of ${METRICS.join(" | ")}`, values.metric);
    }
    const redis = values.redis != null ? checkRedisUrl(values.redis) : undefined;
    requireWith("--queue", values.queue, "--redis", redis != null, "it names the queue of a distributed run");
    for (const flag of ["index", "batch", "sequences", "context-size", "threads", "cpu", "kv-type", "flash-attn"] as const) {
        refuseTogether(`--${flag}`, values[flag], "--redis", redis != null, "the workers answer the questions: give it to `selfrag worker`");
    }
    refuseTogether("--save-traces", saveTraces, "--redis", redis != null, "the workers answer the questions and do not send traces back: run without --redis");
    const limit = integerOption("--limit", values.limit);
    if (limit != null && limit < 1) throw invalidParameterError("--limit", "a positive integer", values.limit);
    const skip = values.resume ? resumeOutput(values.output) : startOutput(values.output);
    if (saveTraces != null && !(values.resume && fs.existsSync(saveTraces))) startOutput(saveTraces);
    // An input with no readable question fails before a model is loaded (as index build does).
    const counted = await countRecords(values.input, task, profile, limit, skip);
    // (--strict stops at the first malformed record with its own error.)
    if (counted.total === 0 && !(values.strict === true && counted.malformed > 0)) throw noQuestionsError(values.input, counted.malformed, counted.firstMalformed);

    const index = values.index != null ? await PassageIndex.open(values.index) : undefined;
    let model: SelfRagModel | undefined;
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once("SIGINT", onSignal);
    try {
        model = redis != null ? undefined : await SelfRagModel.load({
            modelPath: requireModel(values.model),
            sequences: integerOption("--sequences", values.sequences) ?? 4 * slotsNeeded(plan),
            contextSize: integerOption("--context-size", values["context-size"]) ?? 2048, threads: integerOption("--threads", values.threads),
            gpu: values.cpu ? false : "auto", nodeLlamaCpp: false, ...cacheOptions(values)
        });
        if (index == null && mode !== "never") {
            const unretrieved = counted.withoutPassages;
            if (unretrieved > 0) {
                process.stderr.write(`selfrag: warning: ${unretrieved} record${unretrieved === 1 ? " has" : "s have"} no passages and no --index ` +
                    (redis != null ? "was given: the workers retrieve with their --index, or answer without retrieval\n" : "was given: answered without retrieval\n"));
            }
        }
        const progressEvery = process.stderr.isTTY ? 0 : 10_000;
        let written = skip.size;
        let lastProgress = 0;
        const evaluation: EvaluationOptions = {
            metrics: (metricList as MetricName[] | undefined) ?? (preset != null ? [preset.metric] : undefined),
            referenceFields: outputFormat !== "jsonl",
            plan: index != null ? planQuestion(plan.form, {...planOptions(plan), retriever: index.asRetriever()}, CLI_SURFACE) : plan,
            batchSize: integerOption("--batch", values.batch), limit, skip, strict: values.strict,
            signal: abort.signal,
            onRecord: (record: EvalRecord) => {
                appendRecord(values.output!, JSON.stringify(record) + "\n", written);
                written++;
            },
            ...(saveTraces != null ? {onTrace: (trace: ReplayTrace) => fs.appendFileSync(saveTraces, JSON.stringify(trace) + "\n")} : {}),
            onMalformed: (message) => process.stderr.write(`selfrag: warning: ${message} (skipped)\n`),
            onProgress: (s) => {
                if (Date.now() - lastProgress < progressEvery) return;
                lastProgress = Date.now();
                process.stderr.write(`${process.stderr.isTTY ? "\r\x1b[K" : ""}eval: ${progressLine(s, counted.total)}${process.stderr.isTTY ? "" : "\n"}`);
            }
        };
        const summary = redis != null
            ? await (await import("./distributedEval.js")).distributedEval(values.input, evaluation, {redis, queue: values.queue, modelPath: requireModel(values.model)})
            : await runEvaluation(model!, values.input, evaluation);
        if (process.stderr.isTTY) process.stderr.write("\n");
        // Resumed: the metric over every record in the file, not only this run's.
        const records = fs.readFileSync(values.output, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as EvalRecord);
        const file = summarizeRecords(records);
        if (outputFormat !== "jsonl") {
            const target = referenceOutputPath(values.output, {long, task});
            fs.writeFileSync(target, formatReferenceOutput(records, {long, task, metric: summary.metric}));
            if (!values.json) console.log(`eval: the reference scripts' output file: ${target}`);
        }
        if (values.json) {
            console.log(JSON.stringify({...summary, file}));
        } else {
            console.log(`eval: ${describe(summary)}; records in ${values.output}`);
            if (values.resume) {
                console.log(`eval: the whole file: ${file.records} records, ${file.mean != null ? `${summary.metric} ${file.mean.toFixed(4)} over ${file.scored}` : "no scores"}` +
                    `${file.retrievalRate != null ? `, retrieval ${file.retrievalRate.toFixed(3)}` : ""}${file.errors > 0 ? `, ${file.errors} errors` : ""}`);
            }
        }
    } finally {
        process.off("SIGINT", onSignal);
        await model?.dispose();
        await index?.close();
    }
}

/**
 * One pass over the input as runEvaluation reads it: the questions this run goes through (for the
 * progress line's total) and those that will be answered without passages (for the warning).
 */
async function countRecords(file: string, task: Task, profile: ProfileStrategy, limit: number | undefined,
    skip: ReadonlySet<string>): Promise<{total: number, withoutPassages: number, malformed: number, firstMalformed?: string}> {
    let seen = 0;
    let withoutPassages = 0;
    let malformed = 0;
    let firstMalformed: string | undefined;
    for await (const entry of readJsonRecords(file)) {
        if (limit != null && seen >= limit) break;
        const item = entry.kind === "record" ? toEvalItem(entry.value, entry.where, entry.line, task, profile) : entry.message;
        if (typeof item === "string") {
            malformed++;
            firstMalformed ??= item;
            continue;
        }
        seen++;
        if (!skip.has(item.id) && item.passages == null) withoutPassages++;
    }
    return {total: seen, withoutPassages, malformed, ...(firstMalformed != null ? {firstMalformed} : {})};
}

/** `120/1000 (12.0%), 3.10 questions/s, ETA 4m 44s, match 0.4100, ...`: like index build's progress line. */
export function progressLine(s: EvalSummary, total: number): string {
    const done = s.answered + s.errors + s.skipped;
    const left = Math.max(0, total - done);
    const rate = s.questionsPerSecond;
    const eta = rate > 0 && s.answered > 0 ? clock(left / rate) : "?";
    return `${done}/${total} (${(100 * done / Math.max(total, 1)).toFixed(1)}%), ${rate.toFixed(2)} questions/s, ETA ${eta}` +
        s.metrics.filter((m) => m.mean != null).map((m) => `, ${m.metric} ${m.mean!.toFixed(4)}`).join("") +
        (s.errors > 0 ? `, ${s.errors} errors` : "");
}

function clock(seconds: number): string {
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const sec = Math.round(seconds % 60);
    return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${sec}s` : `${sec}s`;
}

function describe(s: EvalSummary): string {
    const parts = [`${s.answered} answered`, `${s.questionsPerSecond.toFixed(2)} questions/s`];
    for (const m of s.metrics) if (m.mean != null) parts.push(`${m.metric} ${m.mean.toFixed(4)} over ${m.scored}`);
    if (s.retrievalRate != null) parts.push(`retrieval ${s.retrievalRate.toFixed(3)}`);
    if (s.errors > 0) parts.push(`${s.errors} errors`);
    if (s.skipped > 0) parts.push(`${s.skipped} already done`);
    if (s.malformed > 0) parts.push(`${s.malformed} malformed skipped`);
    return parts.join(", ");
}

/**
 * Appends one record. A failed write (a full disk, a revoked permission) is OUTPUT_WRITE_FAILED
 * naming the file: the records before it are whole (a record cut short by the failure is dropped
 * by --resume), so the run can be resumed once there is room.
 */
function appendRecord(file: string, line: string, written: number): void {
    try {
        fs.appendFileSync(file, line);
    } catch (error) {
        throw new SelfRagError(`cannot write to ${file}: ${(error as Error).message}; the ${written} records before this one are ` +
            "complete: free some space and run again with --resume", "OUTPUT_WRITE_FAILED", {cause: error});
    }
}

/** A fresh output file; an existing one is an error unless resuming (answers are not thrown away silently). */
function startOutput(file: string): Set<string> {
    if (fs.existsSync(file) && fs.statSync(file).size > 0) {
        throw new SelfRagError(`${file} already holds records; pass --resume to continue it, or choose another --output`, "OUTPUT_EXISTS");
    }
    fs.writeFileSync(file, "");
    return new Set();
}

/**
 * The ids answered in an earlier run. A last line cut off by a kill is removed (the file is
 * truncated after the last complete record); records with an error are run again.
 */
function resumeOutput(file: string): Set<string> {
    if (!fs.existsSync(file)) return startOutput(file);
    const text = fs.readFileSync(file, "utf8");
    const done = new Set<string>();
    const kept: string[] = [];
    const lines = text.split("\n");
    for (const [i, line] of lines.entries()) {
        if (line.trim() === "") continue;
        let record: EvalRecord;
        try {
            record = JSON.parse(line) as EvalRecord;
        } catch {
            if (i === lines.length - 1) break; // the cut-off last line of a killed run
            throw new SelfRagError(`${file}:${i + 1}: not a JSON record; cannot resume from this file`, "INVALID_JSONL");
        }
        if (record.error != null) continue;
        done.add(String(record.id));
        kept.push(line);
    }
    fs.writeFileSync(file, kept.map((l) => l + "\n").join(""));
    return done;
}

/** The command's own option values (the questions' options are read by optionsFromFlags). */
interface EvalValues extends Record<string, string | boolean | undefined> {
    model?: string; input?: string; output?: string; resume?: boolean; metric?: string; index?: string; limit?: string; batch?: string;
    strict?: boolean; json?: boolean; long?: boolean; sequences?: string; "context-size"?: string; threads?: string; cpu?: boolean;
    paper?: string; "output-format"?: string; redis?: string; queue?: string; "kv-type"?: string; "flash-attn"?: string; "save-traces"?: string;
}
