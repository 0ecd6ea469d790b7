import path from "node:path";
import {readCalibrationQuestions} from "../retrieval/CalibrationQueries.js";
import {SelfRagError, invalidParameterError} from "../errors.js";
import {CORPUS_FORMATS, type CorpusFormat} from "../retrieval/corpusReaders.js";
import type {BuildProgress} from "../retrieval/buildIndex.js";
import type {Embedder} from "../retrieval/Embedder.js";
import {GgufEmbedder} from "../retrieval/GgufEmbedder.js";
import type {FileDigest} from "../retrieval/fileDigest.js";
import {AUTO_VERIFY_MAX_BYTES, checkIndexFile, filesToCheck, type FileCheck} from "../retrieval/IndexIntegrity.js";
import {INDEX_FILES, readManifest} from "../retrieval/IndexManifest.js";
import {PassageIndex} from "../retrieval/PassageIndex.js";
import type {SearchPlan} from "../retrieval/SearchCalibration.js";
import {VECTOR_DTYPES, type VectorDtype} from "../retrieval/VectorIndex.js";
import {integerOption, numberOption} from "./options.js";
import {parseCommand} from "./contract.js";

const help = `Usage: selfrag index build --corpus FILE --out DIR [options]
       selfrag index info DIR
       selfrag index verify DIR [--json]

build: embeds every passage of a corpus into a USearch HNSW index (cosine) next to a SQLite
passage store. The index is written to .DIR.building and renamed to DIR when complete, so an
interrupted build never leaves a partial index at DIR; running the command again starts over.
  --corpus FILE         psgs_w100.tsv (DPR: id, text, title), passages .jsonl ({"id", "title", "text"}),
                        or an evaluation file whose records carry "ctxs"/"docs" (.json or .jsonl); .gz is read too
  --out DIR             the index directory to create
  --format F            tsv | jsonl | ctxs | pyserini (FlashRAG) | beir (default: from the file name and first record)
  --embedder E          hashing (default: lexical, no model) | FILE.gguf (an embedding model: BGE, E5, Contriever, ...)
  --dtype T             f16 (default) | i8 | f32: vector storage (2, 1 or 4 bytes per dimension)
  --strict              stop at the first malformed line (default: report it with its line number, skip it)
  --overwrite           replace an existing index at DIR (kept intact until the new one is complete)
  --dims N              hashing embedder dimensions (384)
  --idf-sample N|all    passages the hashing embedder counts word frequencies over (all; 0: no idf weights)
  --bigram-weight X     hashing embedder weight of word bigrams relative to words (0.25; 0: words only)
  --query-prefix S --passage-prefix S   GGUF embedder input prefixes (e.g. "query: " / "passage: " for E5)
  --context N           GGUF embedder tokens per passage (min(model's, 512))
  --connectivity N      HNSW degree (16)     --expansion-add N   build-time ef (128)
  --expansion-search N  search-time ef recorded in the index (default: chosen by the calibration; giving it
                        turns the calibration off unless --calibration-queries is given)
  --target-recall X     recall@10 the default search must reach (0.95): after the build, question-like spans
                        of a held-out sample of passages (embedded as queries) search the index at increasing
                        ef against exact search, and the cheapest search reaching X (HNSW at some ef, or
                        exact search) becomes the index's default; the held-out passages' own recall is
                        reported beside it
  --calibration-queries N|FILE   N: passages held out for that (200; 0: no calibration, ef 128);
                        FILE: your own questions to calibrate with (one per line, or JSONL with "question")
  --keep-vectors        keep vectors.f32 (4 bytes x dims per passage) so the index can be searched exactly
                        (kept anyway when the calibration chooses exact search)
  --threads N           USearch threads (all CPUs)   --batch N   passages per step (256)
  --progress-interval S seconds between progress lines (0.5 on a terminal, 10 otherwise)
  --cpu                 run the GGUF embedder on the CPU

info: prints the manifest of an index (embedder, dimensions, dtype, count, corpus, search plan and
the calibration measurements).

verify: hashes every file of an index (SHA-256) and compares it with the size and checksum the build
recorded in the manifest; prints one line per file: ok, MISMATCH (expected and actual) or missing.
Exit code 1 when a file differs or is missing, or when the index was built before checksums were
recorded (nothing to compare with). Opening an index compares the sizes always and the checksums
when its files add up to less than ${AUTO_VERIFY_MAX_BYTES / 1024 ** 3} GiB (verify: "auto"); this checks a larger one.
  --json                print {"dir", "ok", "files": [{"file", "status", "actual", "expected"}]}
                        (status: ok | mismatch | missing | unrecorded; actual, expected: {bytes, sha256})`;

export async function indexCommand(args: string[]): Promise<void> {
    const [sub, ...rest] = args;
    if (sub == null || sub === "--help" || sub === "-h") {
        console.log(help);
        return;
    }
    if (sub === "build") return build(rest);
    if (sub === "info") return info(rest);
    if (sub === "verify") return verify(rest);
    throw new SelfRagError(`unknown index subcommand "${sub}" (expected build, info or verify; see \`selfrag index --help\`)`, "INVALID_ARGUMENT");
}

async function build(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag index build", help, {args, options: {
        corpus: {type: "string"}, out: {type: "string"}, format: {type: "string"}, embedder: {type: "string"}, dtype: {type: "string"},
        strict: {type: "boolean"}, overwrite: {type: "boolean"}, dims: {type: "string"}, "idf-sample": {type: "string"}, "bigram-weight": {type: "string"},
        "query-prefix": {type: "string"}, "passage-prefix": {type: "string"}, context: {type: "string"},
        connectivity: {type: "string"}, "expansion-add": {type: "string"}, "expansion-search": {type: "string"},
        threads: {type: "string"}, batch: {type: "string"}, "progress-interval": {type: "string"}, cpu: {type: "boolean"},
        "target-recall": {type: "string"}, "calibration-queries": {type: "string"}, "keep-vectors": {type: "boolean"}
    }});
    if (parsed == null) return;
    const {values} = parsed;
    if (values.corpus == null) throw invalidParameterError("--corpus", "a corpus file (.tsv, .jsonl or .json)", values.corpus);
    if (values.out == null) throw invalidParameterError("--out", "the index directory to create", values.out);
    if (values.format != null && !CORPUS_FORMATS.includes(values.format as CorpusFormat)) {
        throw invalidParameterError("--format", CORPUS_FORMATS.join(" | "), values.format);
    }
    if (values.dtype != null && !VECTOR_DTYPES.includes(values.dtype as VectorDtype)) {
        throw invalidParameterError("--dtype", VECTOR_DTYPES.join(" | "), values.dtype);
    }
    const kind = values.embedder ?? "hashing";
    if (kind !== "hashing" && !kind.toLowerCase().endsWith(".gguf")) throw invalidParameterError("--embedder", "hashing or a .gguf file", kind);
    const intervalSeconds = numberOption("--progress-interval", values["progress-interval"]) ?? (process.stderr.isTTY ? 0.5 : 10);
    if (intervalSeconds < 0) throw invalidParameterError("--progress-interval", "a number of seconds >= 0", values["progress-interval"]);

    let embedder: Embedder | undefined;
    if (kind !== "hashing") {
        embedder = await GgufEmbedder.load({
            modelPath: kind, contextSize: integerOption("--context", values.context), threads: integerOption("--threads", values.threads),
            gpu: values.cpu ? false : "auto", queryPrefix: values["query-prefix"], passagePrefix: values["passage-prefix"]
        });
    }
    // Ctrl-C stops at the next batch and removes the temporary directory; a second Ctrl-C quits at once.
    const abort = new AbortController();
    const onSignal = () => {
        if (abort.signal.aborted) process.exit(130);
        abort.abort();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const progress = new ProgressLine(intervalSeconds * 1000);
    let printedMalformed = 0;
    try {
        const summary = await PassageIndex.build({
            corpus: values.corpus, out: values.out, format: values.format as CorpusFormat | undefined, embedder,
            hashing: {
                dimensions: integerOption("--dims", values.dims), bigramWeight: numberOption("--bigram-weight", values["bigram-weight"]),
                idfSample: values["idf-sample"] === "all" ? undefined : integerOption("--idf-sample", values["idf-sample"])
            },
            dtype: values.dtype as VectorDtype | undefined, connectivity: integerOption("--connectivity", values.connectivity),
            expansionAdd: integerOption("--expansion-add", values["expansion-add"]),
            expansionSearch: integerOption("--expansion-search", values["expansion-search"]),
            threads: integerOption("--threads", values.threads), batchSize: integerOption("--batch", values.batch),
            calibration: {
                ...calibrationQueries(values["calibration-queries"]),
                targetRecall: numberOption("--target-recall", values["target-recall"])
            },
            keepVectors: values["keep-vectors"],
            strict: values.strict, overwrite: values.overwrite, signal: abort.signal,
            onProgress: (p) => progress.update(p),
            onMalformed: (message) => {
                if (printedMalformed < 20) progress.note(`selfrag: warning: ${message} (line skipped)`);
                else if (printedMalformed === 20) progress.note("selfrag: warning: further malformed lines are counted, not printed");
                printedMalformed++;
            }
        });
        progress.done();
        const rate = summary.count / Math.max(summary.seconds, 1e-3);
        const skipped = [
            summary.malformed > 0 ? `${summary.malformed} malformed line${summary.malformed === 1 ? "" : "s"} skipped` : "",
            summary.duplicates > 0 ? `${summary.duplicates} duplicate passages skipped` : ""
        ].filter((s) => s !== "").join(", ");
        console.log(`indexed ${summary.count} passages into ${summary.dir} in ${summary.seconds.toFixed(1)} s ` +
            `(${Math.round(rate)} passages/s; embedder ${summary.embedder.name}, ${summary.embedder.dimensions} dims, ` +
            `${summary.manifest.vectors.dtype})${skipped !== "" ? `; ${skipped}` : ""}`);
        console.log(describePlan(summary.manifest.search));
    } finally {
        progress.done();
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await embedder?.dispose();
    }
}

/** `--calibration-queries`: a count of held-out passages, or a file of questions. */
function calibrationQueries(value: string | undefined): {queries?: number, questions?: string[]} {
    if (value == null) return {};
    if (/^\d+$/.test(value.trim())) return {queries: integerOption("--calibration-queries", value)};
    return {questions: readCalibrationQuestions(value)};
}

/** One line on how the index will be searched, and why. */
export function describePlan(plan: SearchPlan | undefined): string {
    if (plan == null) return "search: HNSW (not calibrated)";
    const report = plan.calibration;
    if (report == null) return `search: HNSW at ef ${plan.expansionSearch} (not calibrated${plan.uncalibrated != null ? `: ${plan.uncalibrated}` : ""})`;
    const ms = (us: number | undefined) => us == null ? "n/a" : `${(us / 1000).toFixed(2)} ms/query`;
    const best = report.hnsw.reduce((a, b) => b.recall > a.recall ? b : a, report.hnsw[0]);
    const exact = report.exact.candidate ? `exact search ${ms(report.exact.usPerQuery)}`
        : `exact search not a candidate (${(report.exact.vectorBytes / 1e9).toFixed(1)} GB of vectors > ${(report.exact.memoryLimit / 1e9).toFixed(1)} GB budget)`;
    const kind = report.queryKind ?? "passages";
    const measured = `recall@${report.k} on ${report.queries} ${kind === "questions" ? "of your questions" : kind === "spans"
        ? "question-like spans of held-out passages" : "held-out passages"}`;
    const passagesAt = report.passages?.hnsw.find((m) => m.expansionSearch === plan.expansionSearch);
    const beside = passagesAt != null ? `; the held-out passages themselves: ${passagesAt.recall.toFixed(3)}` : "";
    const head = plan.mode === "exact"
        ? `search: exact (recall 1; HNSW reached ${best.recall.toFixed(3)} at ef ${best.expansionSearch}, ${ms(best.usPerQuery)}; ${exact})`
        : `search: HNSW at ef ${plan.expansionSearch} (${measured}: ${plan.recall?.toFixed(3)}${beside}, ` +
          `${ms(report.hnsw.find((m) => m.expansionSearch === plan.expansionSearch)?.usPerQuery)}; ${exact})`;
    return plan.meetsTarget === false ? `${head}; WARNING: below the target recall ${report.targetRecall}` : head;
}

function info(args: string[]): void {
    const parsed = parseCommand("selfrag index info", help, {args, allowPositionals: true, options: {}});
    if (parsed == null) return;
    const {positionals} = parsed;
    if (positionals.length !== 1) throw invalidParameterError("index directory", "one directory", positionals.join(" "));
    const manifest = readManifest(positionals[0]);
    process.stderr.write(describePlan(manifest.search) + "\n"); // the summary for people; stdout stays JSON
    console.log(JSON.stringify(manifest, null, 2));
}

async function verify(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag index verify", help, {args, allowPositionals: true, options: {json: {type: "boolean"}}});
    if (parsed == null) return;
    const {values, positionals} = parsed;
    if (positionals.length !== 1) throw invalidParameterError("index directory", "one directory", positionals.join(" "));
    const dir = path.resolve(positionals[0]);
    const manifest = readManifest(dir); // a damaged manifest fails here: it is what the files are compared with
    const checks: FileCheck[] = [{file: INDEX_FILES.manifest, status: manifest.manifestSha256 != null ? "ok" : "unrecorded"}];
    const print = (check: FileCheck) => {
        if (!values.json) console.log(`${(check.status === "mismatch" ? "MISMATCH" : check.status).padEnd(10)} ${check.file.padEnd(16)} ${describeCheck(check)}`);
    };
    print(checks[0]);
    // One file after the other, each line printed as its file is done (a large index takes minutes).
    for (const name of filesToCheck(dir, manifest)) {
        const check = await checkIndexFile(dir, name, manifest.files?.[name]);
        checks.push(check);
        print(check);
    }
    const bad = checks.filter((c) => c.status === "mismatch" || c.status === "missing");
    if (values.json) console.log(JSON.stringify({dir, ok: bad.length === 0 && manifest.files != null, files: checks}));
    if (bad.length > 0) {
        throw new SelfRagError(`the index ${dir} is damaged: ${bad.map((c) => `${c.file} ${c.status === "missing" ? "is missing" : "differs"}`).join(", ")} ` +
            "(see the lines above); rebuild it (selfrag index build --overwrite)", "INDEX_CORRUPT");
    }
    if (manifest.files == null) {
        throw new SelfRagError(`the index ${dir} cannot be verified: its manifest records no file checksums (it was built before ` +
            "selfrag recorded them); rebuild it to record them", "INVALID_ARGUMENT");
    }
}

/** The rest of a `selfrag index verify` line: sizes and checksums, expected beside actual when they differ. */
function describeCheck(check: FileCheck): string {
    const digest = (d: FileDigest) => `${d.bytes} bytes, sha256 ${d.sha256}`;
    if (check.file === INDEX_FILES.manifest) {
        return check.status === "ok" ? "matches its own checksum" : "no checksum recorded (built before selfrag recorded them)";
    }
    if (check.status === "ok") return digest(check.actual!);
    if (check.status === "missing") return `not there; expected ${digest(check.expected!)}`;
    if (check.status === "unrecorded") return `${digest(check.actual!)}; no record in the manifest to compare with`;
    return `expected ${digest(check.expected!)}; actual ${digest(check.actual!)}`;
}

/**
 * The progress line on stderr: rewritten in place on a terminal, a new line every interval
 * otherwise (logs of a many-hour build stay readable).
 */
class ProgressLine {
    private last = 0;
    private shown = false;
    private readonly tty = process.stderr.isTTY === true;

    public constructor(private readonly intervalMs: number) {}

    public update(p: BuildProgress): void {
        const now = Date.now();
        // Calibration steps and the save are few and slow: each is shown.
        if (p.phase === "index" || p.phase === "idf") {
            if (now - this.last < this.intervalMs) return;
        }
        this.last = now;
        this.write(describe(p));
    }

    /** A message on its own line, without breaking the progress line. */
    public note(message: string): void {
        if (this.tty && this.shown) process.stderr.write("\r\x1b[K");
        process.stderr.write(message + "\n");
        this.shown = false;
    }

    public done(): void {
        if (this.tty && this.shown) process.stderr.write("\n");
        this.shown = false;
    }

    private write(line: string): void {
        if (this.tty) {
            process.stderr.write(`\r\x1b[K${line}`);
            this.shown = true;
        } else {
            process.stderr.write(line + "\n");
        }
    }
}

function describe(p: BuildProgress): string {
    if (p.phase === "save") return p.step != null ? `${p.step}...` : `saving the vector index (${p.passages} passages)...`;
    if (p.phase === "calibrate") return `calibrating search: ${p.step ?? ""}...`;
    const seconds = p.phaseElapsedMs / 1000;
    const rate = p.passages / Math.max(seconds, 1e-3);
    // The idf pass may stop at its sample long before the end of the file: no fraction, no ETA.
    if (p.phase === "idf") return `counting word frequencies: ${p.passages.toLocaleString("en-US")} passages (${Math.round(rate).toLocaleString("en-US")}/s)`;
    // The fraction done: exact when the idf pass counted the passages, else from the bytes read.
    const fraction = p.totalPassages != null && p.totalPassages > 0 ? p.passages / p.totalPassages
        : p.totalBytes > 0 ? p.bytesRead / p.totalBytes : 0;
    const eta = fraction > 0.001 && fraction < 1 ? ` ETA ${duration(seconds * (1 - fraction) / fraction)}` : "";
    const skipped = p.malformed > 0 ? `, ${p.malformed} malformed skipped` : "";
    return `indexing: ${p.passages.toLocaleString("en-US")} passages (${Math.round(rate).toLocaleString("en-US")}/s), ` +
        `${(fraction * 100).toFixed(1)}% of ${gigabytes(p.totalBytes)}${eta}${skipped}`;
}

function duration(seconds: number): string {
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function gigabytes(bytes: number): string {
    return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
}
