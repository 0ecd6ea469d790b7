// The sizes and SHA-256 checksums an index build records in its manifest: checked at open under
// each verify policy, by `selfrag index verify`, and absent from indexes built before them (which
// still open). Damaged indexes are searched only in a child process (test-support/indexOutcomes.ts):
// a graph that slipped past the checks could crash USearch, and with it the test process.
import assert from "node:assert/strict";
import {createHash} from "node:crypto";
import {execFile} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {AUTO_VERIFY_MAX_BYTES, hashesFiles, verifyIndexFiles} from "../lib/retrieval/IndexIntegrity.js";
import {INDEX_DATA_FILES, INDEX_FILES, readManifest, writeManifest, type IndexDataFile, type IndexManifest} from "../lib/retrieval/IndexManifest.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";
import {rejectsWith} from "../test-support/assertions.js";
import {generatedPassages, writeJsonl} from "../test-support/corpora.js";
import {tempDir} from "../test-support/fixtures.js";
import {runCli} from "../test-support/cli.js";

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, "..", "lib", "cli", "main.js");
const outcomesScript = path.join(here, "..", "test-support", "indexOutcomes.js");

interface Outcome {
    dir: string;
    mode: string;
    outcome: string;
    code?: string;
    message?: string;
}

/** Opens and searches each `dir=mode[=verify]` in a child process. */
async function outcomes(...targets: string[]): Promise<Outcome[]> {
    const {stdout} = await run(process.execPath, [outcomesScript, ...targets], {maxBuffer: 1 << 24}).catch((e: {signal?: string, code?: number, stderr?: string}) => {
        throw new Error(`the child process died (signal ${e.signal}, code ${e.code}): ${e.stderr?.slice(-2000)}`);
    });
    return JSON.parse(stdout) as Outcome[];
}

const selfrag = (...args: string[]) => runCli(args);

let copies = 0;
/** A copy of the index with `change` applied to it. */
function damagedCopy(source: string, change: (dir: string) => void): string {
    const dir = path.join(tempDir, `verify-copy-${copies++}`);
    fs.cpSync(source, dir, {recursive: true});
    change(dir);
    return dir;
}

function flipByte(file: string, at: number): void {
    const bytes = fs.readFileSync(file);
    bytes[at] ^= 0xff;
    fs.writeFileSync(file, bytes);
}

/** The manifest as an index built before checksums has it. */
function withoutRecords(dir: string): void {
    const file = path.join(dir, INDEX_FILES.manifest);
    const {files: _, manifestSha256: __, ...old} = JSON.parse(fs.readFileSync(file, "utf8")) as IndexManifest;
    fs.writeFileSync(file, JSON.stringify(old, null, 2) + "\n");
}

describe("index checksums", function () {
    this.timeout(180_000);
    let source: string;
    before(async () => {
        source = path.join(tempDir, "verify-index");
        // --keep-vectors: every data file the build can write (vectors.usearch, passages.sqlite, idf.bin, vectors.f32).
        await PassageIndex.build({corpus: writeJsonl(path.join(tempDir, "verify-corpus.jsonl"), generatedPassages(400, 34)), out: source,
            keepVectors: true, calibration: {queries: 0}});
    });

    it("the build records the size and SHA-256 of every file of the directory, and the manifest's own checksum", () => {
        const manifest = readManifest(source);
        const onDisk = fs.readdirSync(source).filter((f) => f !== INDEX_FILES.manifest).sort();
        assert.deepEqual(onDisk, [...INDEX_DATA_FILES].sort());
        assert.deepEqual(Object.keys(manifest.files ?? {}).sort(), onDisk);
        for (const name of onDisk) {
            const bytes = fs.readFileSync(path.join(source, name));
            assert.deepEqual(manifest.files![name as IndexDataFile],
                {bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex")}, name);
        }
        assert.match(manifest.manifestSha256 ?? "", /^[0-9a-f]{64}$/);
    });

    it("auto (the default) on a small index: a byte flipped at the start, middle or end of any file is INDEX_CORRUPT naming the directory and file", async () => {
        const targets: string[] = [];
        const expected = new Map<string, string>();
        for (const name of INDEX_DATA_FILES) {
            const size = fs.statSync(path.join(source, name)).size;
            for (const at of [0, size >> 1, size - 1]) {
                const dir = damagedCopy(source, (d) => flipByte(path.join(d, name), at));
                // vectors.f32 is read (and so checked) only by exact search.
                const mode = name === INDEX_FILES.exactVectors ? "exact" : "hnsw";
                targets.push(`${dir}=${mode}`);
                expected.set(dir, name);
                if (name === INDEX_FILES.vectors) targets.push(`${dir}=hnsw-view`);
            }
        }
        const results = await outcomes(...targets);
        assert.equal(results.length, targets.length);
        for (const o of results) {
            const name = expected.get(o.dir)!;
            assert.deepEqual([o.outcome, o.code], ["error", "INDEX_CORRUPT"], `${name}: ${JSON.stringify(o)}`);
            assert.ok(o.message!.startsWith(`the index ${o.dir} is damaged: ${name} does not match the checksum recorded at build time`), o.message);
            assert.match(o.message!, /rebuild it .*selfrag index verify/);
        }
    });

    it("vectors.f32 is checked only by exact search, which reads it: HNSW search opens an index whose vectors.f32 is damaged", async () => {
        const dir = damagedCopy(source, (d) => flipByte(path.join(d, INDEX_FILES.exactVectors), 100));
        const [hnsw, exact] = await outcomes(`${dir}=hnsw`, `${dir}=exact`);
        assert.equal(hnsw.outcome, "searched", JSON.stringify(hnsw));
        assert.equal(exact.code, "INDEX_CORRUPT", JSON.stringify(exact));
    });

    it("never: sizes only; a flipped byte is not caught by hashing (shown on the flat vectors, which exact search reads safely)", async () => {
        // The low byte of the first float: exact search still runs, on a slightly different vector.
        const dir = damagedCopy(source, (d) => flipByte(path.join(d, INDEX_FILES.exactVectors), 0));
        const [never, auto, always] = await outcomes(`${dir}=exact=never`, `${dir}=exact=auto`, `${dir}=exact=always`);
        assert.equal(never.outcome, "searched", JSON.stringify(never));
        assert.equal(auto.code, "INDEX_CORRUPT", JSON.stringify(auto));
        assert.equal(always.code, "INDEX_CORRUPT", JSON.stringify(always));

        // The HNSW graph: compared without opening it (a damaged graph is never searched here).
        const graph = damagedCopy(source, (d) => flipByte(path.join(d, INDEX_FILES.vectors), fs.statSync(path.join(d, INDEX_FILES.vectors)).size - 100));
        const manifest = readManifest(graph);
        await verifyIndexFiles(graph, manifest, [INDEX_FILES.vectors], "never");
        await assert.rejects(verifyIndexFiles(graph, manifest, [INDEX_FILES.vectors], "auto"), rejectsWith("INDEX_CORRUPT", /vectors\.usearch/));

        // A size differs: caught under every policy, before anything is hashed.
        const cut = damagedCopy(source, (d) => fs.truncateSync(path.join(d, INDEX_FILES.vectors), fs.statSync(path.join(d, INDEX_FILES.vectors)).size - 1));
        for (const verify of ["never", "auto", "always"] as const) {
            await assert.rejects(PassageIndex.open(cut, {verify}), rejectsWith("INDEX_CORRUPT",
                new RegExp(`the index .*${path.basename(cut)} is damaged: vectors\\.usearch is \\d+ bytes, recorded at build time: \\d+`)));
        }
        await assert.rejects(PassageIndex.open(source, {verify: "sometimes" as "auto"}), rejectsWith("INVALID_ARGUMENT", /verify policy "sometimes"/));
    });

    it("auto hashes below AUTO_VERIFY_MAX_BYTES (2 GiB) and not from there on; always and never do not look at the size", () => {
        assert.equal(AUTO_VERIFY_MAX_BYTES, 2 * 1024 ** 3);
        assert.equal(hashesFiles("auto", AUTO_VERIFY_MAX_BYTES - 1), true);
        assert.equal(hashesFiles("auto", AUTO_VERIFY_MAX_BYTES), false);
        assert.equal(hashesFiles("always", 50 * 1024 ** 3), true);
        assert.equal(hashesFiles("never", 1), false);
    });

    it("an index built before checksums (no records in its manifest) opens and searches in every mode", async () => {
        const dir = damagedCopy(source, withoutRecords);
        assert.equal(readManifest(dir).files, undefined);
        for (const options of [{}, {view: true}, {mode: "exact" as const}, {verify: "always" as const}]) {
            const index = await PassageIndex.open(dir, options);
            try {
                assert.equal((await index.search("w1 w2 w3 the of", 3)).length, 3, JSON.stringify(options));
            } finally {
                await index.close();
            }
        }
    });

    it("the manifest: edited, its checksum removed, or recording a file that is not the index's: INDEX_CORRUPT", async () => {
        const edited = damagedCopy(source, (d) => {
            const file = path.join(d, INDEX_FILES.manifest);
            fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace(/"count": 400/, "\"count\": 401"));
        });
        await assert.rejects(PassageIndex.open(edited), rejectsWith("INDEX_CORRUPT", /manifest\.json: the manifest does not match its own checksum/));
        const unsealed = damagedCopy(source, (d) => {
            const file = path.join(d, INDEX_FILES.manifest);
            const {manifestSha256: _, ...rest} = JSON.parse(fs.readFileSync(file, "utf8")) as IndexManifest;
            fs.writeFileSync(file, JSON.stringify(rest, null, 2));
        });
        await assert.rejects(PassageIndex.open(unsealed), rejectsWith("INDEX_CORRUPT", /field "manifestSha256"/));
        // Sealed properly, but naming a file outside the index: never read.
        const foreign = damagedCopy(source, (d) => {
            const manifest = readManifest(d);
            writeManifest(d, {...manifest, files: {...manifest.files, ["../outside" as "idf.bin"]: manifest.files![INDEX_FILES.idf]!}});
        });
        await assert.rejects(PassageIndex.open(foreign), rejectsWith("INDEX_CORRUPT", /field "files".*not "\.\.\/outside"/));
    });

    describe("selfrag index verify", () => {
        it("a sound index: one ok line per file with its size and checksum, exit code 0; --json says the same", async () => {
            const manifest = readManifest(source);
            const result = await selfrag("index", "verify", source);
            assert.equal(result.code, 0, result.stderr);
            assert.equal(result.stderr, "");
            const expected = [
                `ok         manifest.json    matches its own checksum`,
                ...INDEX_DATA_FILES.map((name) => `ok         ${name.padEnd(16)} ${manifest.files![name]!.bytes} bytes, sha256 ${manifest.files![name]!.sha256}`)
            ];
            assert.deepEqual(result.stdout.trimEnd().split("\n"), expected);

            const json = await selfrag("index", "verify", source, "--json");
            assert.equal(json.code, 0, json.stderr);
            const report = JSON.parse(json.stdout) as {dir: string, ok: boolean, files: {file: string, status: string}[]};
            assert.equal(report.dir, source);
            assert.equal(report.ok, true);
            assert.deepEqual(report.files.map((f) => [f.file, f.status]), [INDEX_FILES.manifest, ...INDEX_DATA_FILES].map((f) => [f, "ok"]));
        });

        it("a damaged index: MISMATCH with expected and actual, missing, the rest ok; one error line, exit code 1", async () => {
            const dir = damagedCopy(source, (d) => {
                flipByte(path.join(d, INDEX_FILES.passages), 5000);
                fs.rmSync(path.join(d, INDEX_FILES.idf));
            });
            const recorded = readManifest(dir).files!;
            const actual = createHash("sha256").update(fs.readFileSync(path.join(dir, INDEX_FILES.passages))).digest("hex");
            const result = await selfrag("index", "verify", dir);
            assert.equal(result.code, 1);
            const lines = result.stdout.trimEnd().split("\n");
            assert.deepEqual(lines.map((l) => l.split(/\s+/).slice(0, 2)), [
                ["ok", INDEX_FILES.manifest], ["ok", INDEX_FILES.vectors], ["MISMATCH", INDEX_FILES.passages], ["missing", INDEX_FILES.idf],
                ["ok", INDEX_FILES.exactVectors]
            ]);
            const passages = recorded[INDEX_FILES.passages]!;
            assert.equal(lines[2], `MISMATCH   passages.sqlite  expected ${passages.bytes} bytes, sha256 ${passages.sha256}; ` +
                `actual ${passages.bytes} bytes, sha256 ${actual}`);
            assert.equal(lines[3], `missing    idf.bin          not there; expected ${recorded[INDEX_FILES.idf]!.bytes} bytes, sha256 ${recorded[INDEX_FILES.idf]!.sha256}`);
            assert.equal(result.stderr, `selfrag: the index ${dir} is damaged: passages.sqlite differs, idf.bin is missing (see the lines above); ` +
                "rebuild it (selfrag index build --overwrite) [INDEX_CORRUPT]\n");

            const json = await selfrag("index", "verify", "--json", dir);
            assert.equal(json.code, 1);
            const report = JSON.parse(json.stdout) as {ok: boolean, files: {file: string, status: string, actual?: {sha256: string}}[]};
            assert.equal(report.ok, false);
            assert.deepEqual(report.files.map((f) => f.status), ["ok", "ok", "mismatch", "missing", "ok"]);
            assert.equal(report.files[2].actual?.sha256, actual);
            assert.match(json.stderr, /\[INDEX_CORRUPT\]\n$/);
        });

        it("an index built before checksums: unrecorded lines, exit code 1 (nothing to compare with); a damaged manifest fails alone", async () => {
            const old = damagedCopy(source, withoutRecords);
            const result = await selfrag("index", "verify", old);
            assert.equal(result.code, 1);
            assert.deepEqual(result.stdout.trimEnd().split("\n").map((l) => l.split(/\s+/)[0]), Array(5).fill("unrecorded"));
            assert.match(result.stderr, /^selfrag: the index .* cannot be verified: its manifest records no file checksums .*rebuild it to record them \[INVALID_ARGUMENT\]\n$/);

            const broken = damagedCopy(source, (d) => flipByte(path.join(d, INDEX_FILES.manifest), 200));
            const damaged = await selfrag("index", "verify", broken);
            assert.equal(damaged.code, 1);
            assert.equal(damaged.stdout, "");
            assert.match(damaged.stderr, /manifest\.json.*\[INDEX_CORRUPT\]\n$/);
        });

        it("--help, and a missing or extra directory", async () => {
            const help = await selfrag("index", "verify", "--help");
            assert.equal(help.code, 0);
            assert.match(help.stdout, /^Usage: selfrag index build[^]*selfrag index verify DIR \[--json\][^]*\nverify: hashes every file/);
            for (const args of [[], [source, source]]) {
                const result = await selfrag("index", "verify", ...args);
                assert.equal(result.code, 1);
                assert.match(result.stderr, /index directory.*\[INVALID_ARGUMENT\]\n$/);
            }
        });
    });
});
