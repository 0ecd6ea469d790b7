import fs from "node:fs";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {readJsonRecords} from "../jsonRecords.js";
import {tune, unreplayableFlag, TUNE_METRICS, type ReplayTrace, type ReproducibleSetting, type TuneGrid, type TuneSetting} from "../eval/Tune.js";
import type {MetricName} from "../eval/metrics.js";
import {questionFlagOptions, flagOptionKey} from "../selfrag/plan.js";
import {tuneChart} from "../view/TuneChart.js";
import {numberOption, parseCommand} from "./contract.js";

const help = `Usage: selfrag tune --traces FILE [--metric match|em|f1|accuracy] [--thresholds LIST|all] [--w-rel LIST] [--w-sup LIST]
                    [--w-use LIST] [--seqscore on,off] [--max-retrieval-rate X] [--json] [--svg FILE]

Fits the retrieval threshold and the critique weights to your questions without the model: replays
every combination of the lists over the traces of one \`selfrag eval ... --save-traces FILE\` run
(short form; both branches of every question recorded) exactly as a run with those flags decides,
and reports per setting the metric, the retrieval rate and the tokens generated, the Pareto front
of metric against retrieval rate, the best setting and the \`selfrag eval\` flags that reproduce it.
  --traces FILE            the traces (JSONL) of \`selfrag eval --save-traces\`
  --metric M               match (default) | em | f1 | accuracy
  --thresholds LIST|all    comma-separated thresholds, or all (default): one per distinct set of retrieving
                           questions (mid-way between consecutive recorded ratios, and 0 and 1), so the curve is exact
  --w-rel LIST, --w-sup LIST, --w-use LIST
                           comma-separated critique weights (default: the run's); --w-sup / --w-use also count
                           that term (the reference profile's --use-groundness / --use-utility)
  --seqscore on,off        with and/or without the sequence score (default: the run's)
  --max-retrieval-rate X   also the best setting retrieving for at most this fraction of the questions
  --tolerance X            near-tie tolerance (1e-4): a question whose ratio or winning margin is within it may go
                           either way in a fresh run; best is chosen among settings without near-ties
  --json                   one object: {"settings", "front", "best": {..., "flags"}, "bestUnderBudget"?}
  --svg FILE               the chart of the settings and their front
Options that change what the model generates (--ndocs, --max-new-tokens, --profile, --task, ...) are
refused: the traces hold the candidates of one value; record traces with them instead.`;

export async function tuneCommand(args: string[]): Promise<void> {
    const own = {
        traces: {type: "string"}, metric: {type: "string"}, thresholds: {type: "string"}, seqscore: {type: "string"},
        "max-retrieval-rate": {type: "string"}, tolerance: {type: "string"}, json: {type: "boolean"}, svg: {type: "string"}
    } as const;
    // The question flags parse too, so those tune cannot replay are refused by name (the weights are lists here).
    const parsed = parseCommand("selfrag tune", help, {args, options: {...questionFlagOptions(), ...own}});
    if (parsed == null) return;
    const values = parsed.values as Record<string, string | boolean | undefined>;
    for (const [flag, value] of Object.entries(values)) {
        if (value === undefined || Object.hasOwn(own, flag) || ["w-rel", "w-sup", "w-use", "help"].includes(flag)) continue;
        if (flag === "threshold") throw new SelfRagError("tune takes --thresholds (a list, or all), not --threshold", "INVALID_ARGUMENT", {option: "--threshold"});
        if (flag === "use-seqscore" || flag === "no-seqscore") {
            throw new SelfRagError(`tune takes --seqscore on,off (a list), not --${flag}`, "INVALID_ARGUMENT", {option: `--${flag}`});
        }
        throw unreplayableFlag(flagOptionKey(flag) ?? flag, `--${flag}`);
    }
    const file = values.traces as string | undefined;
    if (file == null) throw invalidParameterError("--traces", "the traces file of `selfrag eval --save-traces`", file);
    if (!fs.existsSync(file)) throw new SelfRagError(`traces file not found: ${file}`, "INVALID_ARGUMENT");
    const metric = (values.metric as string | undefined) ?? "match";
    if (metric === "str_em") throw new SelfRagError("--metric str_em scores long-form answers, which tune cannot replay", "INVALID_ARGUMENT", {option: "--metric"});
    if (!TUNE_METRICS.includes(metric as MetricName)) throw invalidParameterError("--metric", TUNE_METRICS.join(" | "), metric);
    const grid: TuneGrid = {
        metric: metric as MetricName,
        thresholds: values.thresholds == null || values.thresholds === "all" ? "all" : numbers("--thresholds", values.thresholds as string),
        ...(values["w-rel"] != null ? {relevance: numbers("--w-rel", values["w-rel"] as string)} : {}),
        ...(values["w-sup"] != null ? {support: numbers("--w-sup", values["w-sup"] as string)} : {}),
        ...(values["w-use"] != null ? {utility: numbers("--w-use", values["w-use"] as string)} : {}),
        ...(values.seqscore != null ? {useSequenceScore: switches("--seqscore", values.seqscore as string)} : {}),
        ...(values["max-retrieval-rate"] != null ? {maxRetrievalRate: numberOption("--max-retrieval-rate", values["max-retrieval-rate"] as string)} : {}),
        ...(values.tolerance != null ? {tolerance: numberOption("--tolerance", values.tolerance as string)} : {})
    };
    const traces: ReplayTrace[] = [];
    for await (const entry of readJsonRecords(file)) {
        if (entry.kind !== "record") throw new SelfRagError(`${entry.message}`, "INVALID_TRACE");
        traces.push(entry.value as ReplayTrace);
    }
    let result;
    try {
        result = tune(traces, grid);
    } catch (error) {
        // Name the grid's keys as this command's flags.
        if (error instanceof SelfRagError) error.message = error.message.replace(/^(relevance|support|utility|thresholds|maxRetrievalRate)\b/, (k) => FLAG_OF[k] ?? k);
        throw error;
    }
    if (values.svg != null) fs.writeFileSync(values.svg as string, tuneChart(result));
    if (values.json) {
        console.log(JSON.stringify(result));
        return;
    }
    console.log(`tune: ${result.settings.length} settings replayed over ${result.questions} questions (${result.scored} with golds), ` +
        `${result.metric}, threshold on the ${result.retrieveRatio} ratio`);
    console.log("\nPareto front (metric against retrieval rate):");
    console.log(row(["threshold", "w-rel", "w-sup", "w-use", "seqscore", result.metric, "retrieval", "tokens", "near-ties"]));
    for (const s of result.front) console.log(row(cells(s)));
    console.log(`\nbest: ${describe(result.best)}\n  selfrag eval ... ${result.best.flags}`);
    if (result.bestUnderBudget !== undefined) {
        console.log(result.bestUnderBudget == null
            ? `\nno setting retrieves for at most ${grid.maxRetrievalRate} of the questions`
            : `\nbest retrieving for at most ${grid.maxRetrievalRate}: ${describe(result.bestUnderBudget)}\n  selfrag eval ... ${result.bestUnderBudget.flags}`);
    }
    if (values.svg != null) console.log(`\nchart: ${values.svg as string}`);
}

const FLAG_OF: Record<string, string> = {relevance: "--w-rel", support: "--w-sup", utility: "--w-use", thresholds: "--thresholds",
    maxRetrievalRate: "--max-retrieval-rate"};

function numbers(flag: string, text: string): number[] {
    return text.split(",").map((t) => {
        const n = numberOption(flag, t.trim());
        if (n == null) throw invalidParameterError(flag, "a comma-separated list of numbers", text);
        return n;
    });
}

function switches(flag: string, text: string): boolean[] {
    return text.split(",").map((t) => {
        const v = t.trim();
        if (v !== "on" && v !== "off") throw invalidParameterError(flag, "on, off or on,off", text);
        return v === "on";
    });
}

function cells(s: TuneSetting): string[] {
    return [String(s.threshold), String(s.weights.relevance), String(s.weights.support), String(s.weights.utility), s.weights.useSequenceScore ? "on" : "off",
        s.metric != null ? s.metric.toFixed(4) : "-", s.retrievalRate.toFixed(3), String(s.generatedTokens),
        String(s.nearTies.decisions + s.nearTies.answers)];
}

function row(values: string[]): string {
    return values.map((v, i) => (i === 0 ? v.padEnd(12) : v.padStart(10))).join(" ");
}

function describe(s: ReproducibleSetting): string {
    return `${s.metric != null ? s.metric.toFixed(4) : "no score"} at retrieval rate ${s.retrievalRate.toFixed(3)}, ${s.generatedTokens} tokens` +
        (s.nearTies.decisions + s.nearTies.answers > 0 ? ` (${s.nearTies.decisions} decisions and ${s.nearTies.answers} answers within the tolerance)` : "");
}
