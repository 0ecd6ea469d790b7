import fs from "node:fs";
import {parseArgs} from "node:util";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {runEvaluation, summarizeRecords, type EvalRecord, type EvalSummary} from "../eval/Evaluation.js";
import {METRICS, type MetricName} from "../eval/metrics.js";
import type {ContextPolicy} from "../selfrag/ForkingSegmentSource.js";
import {TASK_INSTRUCTIONS, type Task} from "../selfrag/prompts.js";
import type {RetrievalMode} from "../selfrag/RetrievalDecision.js";
import {PassageIndex} from "../retrieval/PassageIndex.js";
import {SelfRagModel} from "../SelfRagModel.js";
import {integerOption, numberOption, requireModel, weightOptions, weightsFrom} from "./options.js";

const help = `Usage: selfrag eval [--model FILE] --input FILE --output FILE.jsonl [--task T] [options]

Answers every question of an evaluation file (many in flight at once, sharing every decode step)
and scores the answers with the Self-RAG
scripts' metric. Reads the released evaluation data as is: PopQA / TriviaQA / PubHealth
({"question", "answers", "ctxs"}), ARC-Challenge ({"question", "choices", "answerKey", "ctxs"}),
ASQA ({"question", "qa_pairs", "docs"}); JSONL or a JSON array.
  --input FILE          the evaluation file (.jsonl or .json)
  --output FILE         one JSONL record per question: {"id", "question", "prediction", "golds", "score",
                        "retrieve", "passage" | "docs", "error"?}, in input order as questions finish
  --resume              keep the records already in --output and answer only the missing questions
  --task T              popqa | triviaqa | fever (PubHealth) | arc_c | asqa | ... (default none)
  --metric M            match (default; any gold string in the prediction) | accuracy | str_em (default with --long)
  --index DIR           retrieve for questions whose record has no passages
  --limit N             the first N questions only
  --batch N             questions in flight at once (64); as one finishes the next starts
  --strict              stop at the first malformed record (default: report it, skip it)
  --json                print the summary as JSON
  short form: --ndocs N (5) --mode adaptive|always|never --threshold X (0.2) --max-new-tokens N (100)
              --w-rel X --w-sup X --w-use X --no-seqscore
  long form:  --long --beam-width N (2) --max-depth N (7) --ignore-cont --context reference|interleaved
  --sequences N (slots; default: enough for 4 questions) --context-size N (2048) --threads N --cpu`;

const TASKS = new Set<string>([...Object.keys(TASK_INSTRUCTIONS), "popqa", "triviaqa", "none"]);

export async function evalCommand(args: string[]): Promise<void> {
    const {values} = parseArgs({args, options: {
        model: {type: "string"}, input: {type: "string"}, output: {type: "string"}, resume: {type: "boolean"}, task: {type: "string"},
        metric: {type: "string"}, index: {type: "string"}, limit: {type: "string"}, batch: {type: "string"}, strict: {type: "boolean"},
        json: {type: "boolean"}, ndocs: {type: "string"}, mode: {type: "string"}, threshold: {type: "string"},
        "max-new-tokens": {type: "string"}, long: {type: "boolean"}, "beam-width": {type: "string"}, "max-depth": {type: "string"},
        "ignore-cont": {type: "boolean"}, context: {type: "string"}, sequences: {type: "string"}, "context-size": {type: "string"},
        threads: {type: "string"}, cpu: {type: "boolean"}, help: {type: "boolean"}, ...weightOptions
    }});
    if (values.help) {
        console.log(help);
        return;
    }
    if (values.input == null) throw invalidParameterError("--input", "an evaluation file (.jsonl or .json)", values.input);
    if (!fs.existsSync(values.input)) throw new SelfRagError(`evaluation file not found: ${values.input}`, "CORPUS_NOT_FOUND");
    if (values.output == null) throw invalidParameterError("--output", "the JSONL file to write", values.output);
    const task = (values.task ?? "none") as Task;
    if (!TASKS.has(task)) throw invalidParameterError("--task", [...TASKS].join(" | "), values.task);
    if (values.metric != null && !METRICS.includes(values.metric as MetricName)) throw invalidParameterError("--metric", METRICS.join(" | "), values.metric);
    if (values.mode != null && !["adaptive", "always", "never"].includes(values.mode)) {
        throw invalidParameterError("--mode", "adaptive | always | never", values.mode);
    }
    if (values.context != null && values.context !== "reference" && values.context !== "interleaved") {
        throw invalidParameterError("--context", "reference | interleaved", values.context);
    }
    const ndocs = integerOption("--ndocs", values.ndocs) ?? 5;
    const beamWidth = integerOption("--beam-width", values["beam-width"]) ?? 2;
    const skip = values.resume ? resumeOutput(values.output) : startOutput(values.output);

    const index = values.index != null ? await PassageIndex.open(values.index) : undefined;
    let model: SelfRagModel | undefined;
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    process.once("SIGINT", onSignal);
    try {
        model = await SelfRagModel.load({
            modelPath: requireModel(values.model),
            sequences: integerOption("--sequences", values.sequences) ?? 4 * (values.long ? beamWidth * ndocs : ndocs),
            contextSize: integerOption("--context-size", values["context-size"]) ?? 2048, threads: integerOption("--threads", values.threads),
            gpu: values.cpu ? false : "auto"
        });
        const common = {
            ndocs, mode: values.mode as RetrievalMode | undefined, threshold: numberOption("--threshold", values.threshold),
            maxNewTokens: integerOption("--max-new-tokens", values["max-new-tokens"]), weights: weightsFrom(values)
        };
        const progressEvery = process.stderr.isTTY ? 0 : 10_000;
        let lastProgress = 0;
        const summary = await runEvaluation(model, values.input, {
            task, metric: values.metric as MetricName | undefined, long: values.long, retriever: index?.asRetriever(),
            shortForm: common,
            longForm: {...common, beamWidth, maxDepth: integerOption("--max-depth", values["max-depth"]), ignoreCont: values["ignore-cont"],
                contextPolicy: values.context as ContextPolicy | undefined},
            batchSize: integerOption("--batch", values.batch), limit: integerOption("--limit", values.limit), skip, strict: values.strict,
            signal: abort.signal,
            onRecord: (record: EvalRecord) => fs.appendFileSync(values.output!, JSON.stringify(record) + "\n"),
            onMalformed: (message) => process.stderr.write(`selfrag: warning: ${message} (skipped)\n`),
            onProgress: (s) => {
                if (Date.now() - lastProgress < progressEvery) return;
                lastProgress = Date.now();
                process.stderr.write(`${process.stderr.isTTY ? "\r\x1b[K" : ""}eval: ${describe(s)}${process.stderr.isTTY ? "" : "\n"}`);
            }
        });
        if (process.stderr.isTTY) process.stderr.write("\n");
        // Resumed: the metric over every record in the file, not only this run's.
        const file = summarizeRecords(fs.readFileSync(values.output, "utf8").split("\n").filter((l) => l.trim() !== "")
            .map((l) => JSON.parse(l) as EvalRecord));
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

function describe(s: EvalSummary): string {
    const parts = [`${s.answered} answered`, `${s.questionsPerSecond.toFixed(2)} questions/s`];
    if (s.mean != null) parts.push(`${s.metric} ${s.mean.toFixed(4)} over ${s.scored}`);
    if (s.retrievalRate != null) parts.push(`retrieval ${s.retrievalRate.toFixed(3)}`);
    if (s.errors > 0) parts.push(`${s.errors} errors`);
    if (s.skipped > 0) parts.push(`${s.skipped} already done`);
    if (s.malformed > 0) parts.push(`${s.malformed} malformed skipped`);
    return parts.join(", ");
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
