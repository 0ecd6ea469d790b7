// `selfrag index build` and `selfrag search` as a user runs them: malformed-line reports, --strict,
// a build killed with SIGKILL, the JSON output, and a GGUF embedding model. Corpora are generated
// into a temporary folder.
import assert from "node:assert/strict";
import {spawn} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {SelfRagError} from "../lib/errors.js";
import {writeBertFixture} from "../lib/fixtures/BertFixture.js";
import {readManifest} from "../lib/retrieval/IndexManifest.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";
import {runCli} from "../test-support/cli.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-retrieval-cli-"));
after(() => fs.rmSync(dir, {recursive: true, force: true}));

const selfrag = (...args: string[]) => runCli(args);

/** A DPR-style TSV of `count` passages (quoted text, as DPR writes it), generated from a seed. */
function writeDprTsv(file: string, count: number, seed: number, lineFor?: (n: number) => string | undefined): string {
    let state = seed >>> 0;
    const next = () => {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        return state / 4294967296;
    };
    const word = () => `w${Math.floor(next() * next() * 3000).toString(36)}`;
    const lines = ["id\ttext\ttitle"];
    for (let i = 1; i <= count; i++) {
        const custom = lineFor?.(i);
        if (custom != null) {
            lines.push(custom);
            continue;
        }
        const text = Array.from({length: 30 + Math.floor(next() * 40)}, word).join(" ");
        lines.push(`${i}\t"${text} ""said"" ${word()}"\tTitle ${i}`);
    }
    fs.writeFileSync(file, lines.join("\n") + "\n");
    return file;
}

/** The first words of passage `id`'s text: a query that only that passage matches well. */
function wordsOf(file: string, id: number, count = 8): string {
    const line = fs.readFileSync(file, "utf8").split("\n")[id];
    assert.ok(line.startsWith(`${id}\t`), `line ${id + 1} of ${file} holds passage ${id}`);
    return line.split("\t")[1].replace(/"/g, "").split(" ").slice(0, count).join(" ");
}

describe("retrieval CLI: index build and search", () => {
    it("reports malformed lines with file:line, skips them, ends with a summary; --strict stops", async () => {
        const corpus = writeDprTsv(path.join(dir, "bad.tsv"), 300, 3, (n) =>
            n === 50 ? "50\t\"unterminated quote\tT" : n === 120 ? "120\tno title field" : undefined);
        const out = path.join(dir, "bad-index");
        const result = await selfrag("index", "build", "--corpus", corpus, "--out", out);
        assert.equal(result.code, 0, result.stderr);
        // Line numbers count the header: passage n is on line n + 1.
        assert.match(result.stderr, /selfrag: warning: .*bad\.tsv:51: unterminated quoted field 2 \(opened at column 4\) \(line skipped\)\n/);
        assert.match(result.stderr, /selfrag: warning: .*bad\.tsv:121: expected 3 tab-separated fields \(id, text, title\), found 2 \(line skipped\)\n/);
        assert.match(result.stdout, /^indexed 298 passages into .*bad-index in [\d.]+ s \(\d+ passages\/s; embedder hashing .*384 dims, f16\); 2 malformed lines skipped\nsearch: HNSW at ef 128 \(not calibrated: 298 passages, under 1000: HNSW at ef 128 finds the exact top k on an index this small\)\n$/);
        assert.equal(readManifest(out).count, 298);
        assert.equal(readManifest(out).corpus.malformed, 2);

        const strictOut = path.join(dir, "strict-index");
        const strict = await selfrag("index", "build", "--corpus", corpus, "--out", strictOut, "--strict");
        assert.equal(strict.code, 1);
        assert.match(strict.stderr, /^selfrag: .*bad\.tsv:51: unterminated quoted field 2 .*--strict.* \[MALFORMED_CORPUS\]\n$/m);
        assert.ok(!fs.existsSync(strictOut), "no index after a failed strict build");
        assert.ok(!fs.existsSync(path.join(dir, ".strict-index.building")), "no temporary directory left either");
    });

    it("search --json prints {results: [{id, title, text, score}]}, best first; without --json a list", async () => {
        const out = path.join(dir, "bad-index");
        const query = wordsOf(path.join(dir, "bad.tsv"), 7);
        const result = await selfrag("search", "--index", out, "--k", "4", "--json", query);
        assert.equal(result.code, 0, result.stderr);
        const json = JSON.parse(result.stdout) as {results: {id: string, title: string, text: string, score: number}[]};
        assert.deepEqual(Object.keys(json), ["results"]);
        assert.equal(json.results.length, 4);
        for (const r of json.results) {
            assert.deepEqual(Object.keys(r), ["id", "title", "text", "score"]);
            assert.equal(typeof r.score, "number");
        }
        assert.equal(json.results[0].id, "7");
        assert.equal(json.results[0].title, "Title 7");
        assert.match(json.results[0].text, / "said" /, "DPR's doubled quotes are unescaped");
        for (let i = 1; i < 4; i++) assert.ok(json.results[i - 1].score >= json.results[i].score);

        const plain = await selfrag("search", "--index", out, "--k", "2", query);
        assert.equal(plain.code, 0, plain.stderr);
        assert.match(plain.stdout, /^ 1\. [\d.]+ {2}\[7\] Title 7\n {4}\S/);
    });

    it("--target-recall: the build reports the search it chose; search --exact and --hnsw override it", async () => {
        const corpus = writeDprTsv(path.join(dir, "calibrated.tsv"), 1200, 77);
        const out = path.join(dir, "calibrated-index");
        // Recall 1 is only certain with exact search: the calibration must choose it and keep vectors.f32.
        const built = await selfrag("index", "build", "--corpus", corpus, "--out", out, "--target-recall", "1", "--calibration-queries", "60");
        assert.equal(built.code, 0, built.stderr);
        assert.match(built.stdout, /\nsearch: exact \(recall 1; HNSW reached [\d.]+ at ef \d+, [\d.]+ ms\/query; exact search [\d.]+ ms\/query\)\n$/);
        assert.match(built.stderr, /calibrating search: HNSW search at ef 16/);
        const info = JSON.parse((await selfrag("index", "info", out)).stdout) as {search: {mode: string, calibration: {queries: number}}};
        assert.equal(info.search.mode, "exact");
        assert.equal(info.search.calibration.queries, 60);
        const query = wordsOf(corpus, 300);
        const ids = async (...flags: string[]) => {
            const r = await selfrag("search", "--index", out, "--k", "3", "--json", ...flags, query);
            assert.equal(r.code, 0, r.stderr);
            return (JSON.parse(r.stdout) as {results: {id: string}[]}).results.map((x) => x.id);
        };
        const [byDefault, exact, hnsw] = [await ids(), await ids("--exact"), await ids("--hnsw", "--expansion-search", "256")];
        assert.deepEqual(byDefault, exact);
        assert.equal(exact[0], "300");
        assert.equal(hnsw[0], "300");
        const both = await selfrag("search", "--index", out, "--exact", "--hnsw", query);
        assert.match(both.stderr, /--exact \/ --hnsw .*\[INVALID_ARGUMENT\]/);
        const badTarget = await selfrag("index", "build", "--corpus", corpus, "--out", path.join(dir, "never"), "--target-recall", "2");
        assert.match(badTarget.stderr, /targetRecall .*\[INVALID_ARGUMENT\]/);
        assert.ok(!fs.existsSync(path.join(dir, "never")));
    });

    it("a build killed with SIGKILL leaves DIR untouched; the next run starts over and completes", async function () {
        this.timeout(240_000);
        const corpus = writeDprTsv(path.join(dir, "big.tsv"), 40_000, 9);
        const fresh = path.join(dir, "killed-index");
        const existing = path.join(dir, "existing-index");
        // --dims 64 keeps the HNSW inserts quick enough for a test; the build still takes seconds.
        const buildArgs = (out: string, ...extra: string[]) =>
            [cli, "index", "build", "--corpus", corpus, "--out", out, "--dims", "64", "--progress-interval", "0.05", ...extra];

        const killMidBuild = async (args: string[], whileRunning?: () => Promise<void>) => {
            const child = spawn(process.execPath, args, {stdio: ["ignore", "pipe", "pipe"]});
            let stderr = "";
            const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
            await new Promise<void>((resolve, reject) => {
                child.stderr.on("data", (chunk: Buffer) => {
                    stderr += chunk.toString();
                    if (/indexing: [\d,]+ passages/.test(stderr)) resolve();
                });
                void exited.then((code) => reject(new Error(`the build ended (code ${code}) before it could be killed:\n${stderr}`)));
            });
            await whileRunning?.();
            child.kill("SIGKILL");
            await exited;
            return stderr;
        };

        await killMidBuild(buildArgs(fresh), async () => {
            // While it runs, a second build of the same DIR is refused rather than mixed in.
            await assert.rejects(PassageIndex.build({corpus, out: fresh}), (error: unknown) =>
                error instanceof SelfRagError && error.code === "BUILD_IN_PROGRESS" && /another build \(pid \d+/.test(error.message));
        });
        assert.ok(!fs.existsSync(fresh), "no partial index at DIR");
        assert.ok(fs.existsSync(path.join(dir, ".killed-index.building")), "the partial build sits in the temporary directory");

        // An index already at DIR survives a killed --overwrite build byte for byte.
        const small = writeDprTsv(path.join(dir, "small.tsv"), 50, 4);
        assert.equal((await selfrag("index", "build", "--corpus", small, "--out", existing, "--dims", "64")).code, 0);
        const before = Object.fromEntries(fs.readdirSync(existing).map((f) => [f, fs.readFileSync(path.join(existing, f))]));
        await killMidBuild(buildArgs(existing, "--overwrite"));
        const after = Object.fromEntries(fs.readdirSync(existing).map((f) => [f, fs.readFileSync(path.join(existing, f))]));
        assert.deepEqual(after, before);
        const stillWorks = await selfrag("search", "--index", existing, "--json", wordsOf(small, 3));
        assert.equal(JSON.parse(stillWorks.stdout).results[0].id, "3");

        // Running again removes the stale temporary directory and builds the whole corpus.
        const rerun = await selfrag(...buildArgs(fresh).slice(1));
        assert.equal(rerun.code, 0, rerun.stderr);
        assert.match(rerun.stdout, /^indexed 40000 passages/);
        assert.equal(readManifest(fresh).count, 40_000);
        assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith(".killed-index")), []);
        const found = await selfrag("search", "--index", fresh, "--json", "--k", "1", wordsOf(corpus, 31415, 1000));
        assert.equal(JSON.parse(found.stdout).results[0].id, "31415");
    });

    it("builds and searches with a GGUF embedding model (the generated BERT fixture)", async () => {
        const model = path.join(dir, "bert.gguf");
        await writeBertFixture(model);
        const corpus = path.join(dir, "topics.jsonl");
        const topics = ["paris france capital city", "bananas yellow fruit potassium", "volcano lava eruption magma"];
        fs.writeFileSync(corpus, topics.flatMap((t, i) => [0, 1, 2].map((j) => JSON.stringify({id: `${i}-${j}`, title: `t${i}`, text: `${t} ${j}`})))
            .join("\n") + "\n");
        const out = path.join(dir, "gguf-index");
        const built = await selfrag("index", "build", "--corpus", corpus, "--out", out, "--embedder", model, "--cpu", "--dtype", "f32");
        assert.equal(built.code, 0, built.stderr);
        assert.match(built.stdout, /indexed 9 passages .*embedder selfrag-fixture-bert, 64 dims, f32/);
        const found = await selfrag("search", "--index", out, "--json", "--k", "3", "--cpu", "lava from a volcano");
        assert.equal(found.code, 0, found.stderr);
        assert.deepEqual((JSON.parse(found.stdout) as {results: {id: string}[]}).results.map((r) => r.id.split("-")[0]), ["2", "2", "2"]);
        const info = await selfrag("index", "info", out);
        assert.equal(JSON.parse(info.stdout).embedder.kind, "gguf");
    });

    it("bad input: one line with the code, exit code 1", async () => {
        const missing = await selfrag("index", "build", "--corpus", path.join(dir, "nope.tsv"), "--out", path.join(dir, "o"));
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /^selfrag: corpus file not found: .*nope\.tsv \[CORPUS_NOT_FOUND\]\n$/);
        const noOut = await selfrag("index", "build", "--corpus", path.join(dir, "small.tsv"));
        assert.match(noOut.stderr, /--out .*\[INVALID_ARGUMENT\]/);
        const dtype = await selfrag("index", "build", "--corpus", path.join(dir, "small.tsv"), "--out", path.join(dir, "o"), "--dtype", "f8");
        assert.match(dtype.stderr, /Expected f16 \| i8 \| f32 for --dtype but received "f8" .*\[INVALID_ARGUMENT\]/);
        const empty = path.join(dir, "empty.tsv");
        fs.writeFileSync(empty, "id\ttext\ttitle\n");
        const emptyRun = await selfrag("index", "build", "--corpus", empty, "--out", path.join(dir, "o"));
        assert.match(emptyRun.stderr, /^selfrag: corpus .*empty\.tsv holds no passages \[EMPTY_CORPUS\]\n$/);
        const noIndex = await selfrag("search", "--index", path.join(dir, "nowhere"), "query");
        assert.match(noIndex.stderr, /^selfrag: index directory not found: .*nowhere \[INDEX_NOT_FOUND\]\n$/);
        const exists = await selfrag("index", "build", "--corpus", path.join(dir, "small.tsv"), "--out", path.join(dir, "existing-index"));
        assert.match(exists.stderr, /an index already exists at .*existing-index; pass --overwrite to replace it \[OUTPUT_EXISTS\]/);
        const unknown = await selfrag("index", "frobnicate");
        assert.match(unknown.stderr, /unknown index subcommand "frobnicate"/);
        assert.ok(!fs.existsSync(path.join(dir, "o")));
    });
});
