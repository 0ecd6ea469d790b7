// Process and file faults: `selfrag eval` killed with SIGKILL and resumed, `selfrag serve` killed
// mid-answer and restarted, damaged index files (every file of an index truncated and bit-flipped:
// the manifest's sizes and checksums catch each), and an evaluation whose output cannot be written. (A killed `selfrag index build` is in
// 12-retrieval-cli; truncated and bit-flipped model files in 05 and 26.) Damaged files are opened
// in a child process, so a native crash would show as that process dying, not as a lost suite.
import assert from "node:assert/strict";
import {execFile, spawn} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {runEvaluation, type EvalRecord} from "../lib/eval/Evaluation.js";
import {INDEX_FILES} from "../lib/retrieval/IndexManifest.js";
import {PassageIndex} from "../lib/retrieval/PassageIndex.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";
import {rejectsWith} from "../test-support/assertions.js";
import {generatedPassages, writeJsonl} from "../test-support/corpora.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {mulberry32} from "../test-support/random.js";
import {serve} from "../test-support/server.js";

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, "..", "lib", "cli", "main.js");
const CTXS = [
    {title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {title: "Berlin", text: "Berlin is the capital of Germany."},
    {title: "Rome", text: "Rome is the capital of Italy."}
];

/** PopQA-shaped records: a question, its gold answers, and pre-retrieved passages. */
function writeQuestions(file: string, count: number): string {
    const questions = ["What is the capital of France?", "Say hello.", "Which city is the capital of France?", "Tell me about Rome."];
    return writeJsonl(file, Array.from({length: count}, (_, i) => ({
        id: `q${i}`, question: `${questions[i % questions.length]} (${i})`, answers: ["Paris"], ctxs: CTXS
    })));
}

const lines = (file: string) => fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "");

describe("process and file faults", function () {
    this.timeout(300_000);

    it("selfrag eval killed with SIGKILL mid-run: --resume completes it without losing or repeating a question", async () => {
        const input = writeQuestions(path.join(tempDir, "kill-eval.jsonl"), 300);
        const args = (output: string) => [cli, "eval", "--model", "", "--input", input, "--output", output, "--task", "popqa", "--ndocs", "3",
            "--max-new-tokens", "24", "--context-size", "512", "--batch", "2", "--cpu", "--json"];
        const model = await tinyModel();
        const withModel = (output: string) => args(output).map((a, i, all) => (all[i - 1] === "--model" ? model : a));

        // The uninterrupted run: the oracle.
        const whole = path.join(tempDir, "kill-eval-whole.jsonl");
        await run(process.execPath, withModel(whole), {maxBuffer: 1 << 24});
        const expected = new Map(lines(whole).map((l) => [(JSON.parse(l) as EvalRecord).id, l]));
        assert.equal(expected.size, 300);

        // Killed once some records are out (and, most likely, while one is being appended).
        const output = path.join(tempDir, "kill-eval-out.jsonl");
        const child = spawn(process.execPath, withModel(output), {stdio: "ignore"});
        const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
        for (;;) {
            if (fs.existsSync(output) && lines(output).length >= 20) break;
            if (child.exitCode != null) assert.fail("the evaluation ended before it could be killed");
            await new Promise((resolve) => setTimeout(resolve, 2));
        }
        child.kill("SIGKILL");
        assert.equal(await exited, "SIGKILL");
        const before = lines(output).length;
        assert.ok(before >= 20 && before < 300, `${before} records written before the kill`);

        const resumed = JSON.parse((await run(process.execPath, [...withModel(output), "--resume"], {maxBuffer: 1 << 24})).stdout) as
            {answered: number, skipped: number, file: {records: number}};
        const after = lines(output);
        const ids = after.map((l) => (JSON.parse(l) as EvalRecord).id);
        assert.equal(new Set(ids).size, ids.length, "no question twice");
        assert.equal(ids.length, 300, "no question lost");
        assert.equal(resumed.file.records, 300);
        assert.equal(resumed.answered + resumed.skipped, 300);
        // Each record as the uninterrupted run wrote it (the retrieval probability to float noise:
        // questions share decode steps differently from one run to the next).
        for (const line of after) {
            const got = JSON.parse(line) as EvalRecord;
            const want = JSON.parse(expected.get(got.id)!) as EvalRecord;
            assert.deepEqual({...got, retrieve: undefined}, {...want, retrieve: undefined}, got.id);
            assert.equal(got.retrieve?.decision, want.retrieve?.decision, got.id);
            assert.ok(Math.abs(got.retrieve!.p - want.retrieve!.p) < 1e-6, got.id);
        }
    });

    it("selfrag serve killed with SIGKILL during a long-form search: the client gets an error, not a hang; a restarted server answers alike", async () => {
        const question = {question: "Tell me a bio of Paris, the capital of France.", passages: CTXS, long: true, beamWidth: 2, ndocs: 2,
            maxDepth: 4, maxNewTokens: 20};
        const first = await serve("--sequences", "8", "--context-size", "512");
        const expected = await (await fetch(first.url + "/v1/answer", {method: "POST", body: JSON.stringify(question)})).json();
        const res = await fetch(first.url + "/v1/answer", {method: "POST", body: JSON.stringify({...question, stream: true})});
        const reader = res.body!.getReader();
        await reader.read(); // the retrieval decision: the search is under way
        first.child.kill("SIGKILL");
        await assert.rejects(async () => {
            for (;;) {
                const {done} = await reader.read();
                if (done) throw new Error("the stream ended cleanly");
            }
        }, (e: Error) => e.message !== "the stream ended cleanly");
        const again = await serve("--sequences", "8", "--context-size", "512", "--port", String(first.port));
        try {
            const answer = await (await fetch(again.url + "/v1/answer", {method: "POST", body: JSON.stringify(question)})).json();
            assert.deepEqual(answer, expected);
        } finally {
            await again.stop();
        }
    });

    describe("a damaged index: every file truncated or bit-flipped gives a coded error, never a crash", () => {
        let source: string;
        before(async () => {
            source = path.join(tempDir, "fault-index");
            // 1200 passages: enough for the calibration; --keep-vectors writes vectors.f32 as well.
            await PassageIndex.build({corpus: writeJsonl(path.join(tempDir, "fault-corpus.jsonl"), generatedPassages(1200, 28)), out: source,
                keepVectors: true, calibration: {queries: 0}});
            for (const file of Object.values(INDEX_FILES)) assert.ok(fs.existsSync(path.join(source, file)), file);
        });

        it("each file: removed, emptied, cut in half, cut by one byte, and bytes flipped at 12 places", async () => {
            const rng = mulberry32(280);
            const damaged: string[] = [];
            const describe = new Map<string, string>();
            let n = 0;
            for (const file of Object.values(INDEX_FILES)) {
                const bytes = fs.readFileSync(path.join(source, file));
                const variants: [string, Buffer | null][] = [
                    ["removed", null], ["empty", Buffer.alloc(0)], ["half", bytes.subarray(0, bytes.length >> 1)],
                    ["minus one byte", bytes.subarray(0, bytes.length - 1)]
                ];
                // Anywhere, the HNSW graph at the end of vectors.usearch included: the checksums are
                // compared before USearch reads the file (see the graph test below).
                for (let k = 0; k < 12; k++) {
                    const flipped = Buffer.from(bytes);
                    // Early bytes (headers) more often than late ones (data).
                    const at = k < 6 ? Math.floor(rng() * Math.min(bytes.length, 512)) : Math.floor(rng() * bytes.length);
                    flipped[at] ^= 0xff;
                    variants.push([`byte ${at} flipped`, flipped]);
                }
                for (const [what, content] of variants) {
                    const dir = path.join(tempDir, `damaged-${n++}`);
                    fs.cpSync(source, dir, {recursive: true});
                    if (content == null) fs.rmSync(path.join(dir, file));
                    else fs.writeFileSync(path.join(dir, file), content);
                    for (const mode of file === INDEX_FILES.exactVectors ? ["exact"] : ["hnsw", "hnsw-view"]) {
                        damaged.push(`${dir}=${mode}`);
                        describe.set(`${dir}=${mode}`, `${file} ${what} (${mode})`);
                    }
                }
            }
            const script = path.join(here, "..", "test-support", "indexOutcomes.js");
            const {stdout} = await run(process.execPath, [script, ...damaged], {maxBuffer: 1 << 24}).catch((e: {signal?: string, code?: number, stderr?: string}) => {
                throw new Error(`the child process died (signal ${e.signal}, code ${e.code}): ${e.stderr?.slice(-2000)}`);
            });
            const outcomes = JSON.parse(stdout) as {dir: string, mode: string, outcome: string, code?: string, message?: string}[];
            assert.equal(outcomes.length, damaged.length, "the child process went through every damaged index and exited normally");
            for (const o of outcomes) {
                const what = describe.get(`${o.dir}=${o.mode}`)!;
                // The manifest's last byte is its final newline: without it the manifest says the same.
                if (what.startsWith(`${INDEX_FILES.manifest} minus one byte`)) {
                    assert.equal(o.outcome, "searched", `${what}: ${JSON.stringify(o)}`);
                    continue;
                }
                // Every other change is caught (the data files by their recorded sizes and checksums,
                // the manifest by its own), and only a missing manifest means "no index here".
                const code = what.startsWith(`${INDEX_FILES.manifest} removed`) ? "INDEX_NOT_FOUND" : "INDEX_CORRUPT";
                assert.deepEqual([o.outcome, o.code], ["error", code], `${what}: ${JSON.stringify(o)}`);
                assert.ok(o.message!.includes(path.basename(o.dir)), `${what}: the message names the index: ${o.message}`);
                const file = what.split(" ")[0];
                assert.ok(o.message!.includes(file), `${what}: the message names the file: ${o.message}`);
            }
            const byFile = new Map<string, string[]>();
            for (const o of outcomes) {
                const file = describe.get(`${o.dir}=${o.mode}`)!.split(" ")[0];
                byFile.set(file, [...(byFile.get(file) ?? []), o.outcome === "error" ? o.code! : o.outcome]);
            }
            for (const [file, list] of byFile) {
                const counts = new Map<string, number>();
                for (const x of list) counts.set(x, (counts.get(x) ?? 0) + 1);
                console.log(`      ${file}: ${[...counts].map(([k, v]) => `${v} ${k}`).join(", ")}`);
            }
        });

        // USearch trusts the neighbour ids of the graph it loads or views, so a flipped byte in that
        // part of vectors.usearch can make a search read out of bounds and kill the process (SIGSEGV),
        // in hnsw and view mode alike: before checksums, 56 of these 332 opens died so. The file's
        // checksum, compared at open before USearch reads it, now refuses every one.
        it("a byte flipped in the HNSW graph section of vectors.usearch gives INDEX_CORRUPT at open, not a crash", async () => {
            const bytes = fs.readFileSync(path.join(source, INDEX_FILES.vectors));
            const damaged: string[] = [];
            for (let at = Math.floor(bytes.length * 0.85); at < bytes.length; at += 997) {
                const dir = path.join(tempDir, `graph-flip-${at}`);
                fs.cpSync(source, dir, {recursive: true});
                const flipped = Buffer.from(bytes);
                flipped[at] ^= 0xff;
                fs.writeFileSync(path.join(dir, INDEX_FILES.vectors), flipped);
                damaged.push(`${dir}=hnsw`, `${dir}=hnsw-view`);
            }
            const script = path.join(here, "..", "test-support", "indexOutcomes.js");
            const {stdout} = await run(process.execPath, [script, ...damaged], {maxBuffer: 1 << 24}).catch((e: {signal?: string, code?: number, stderr?: string}) => {
                throw new Error(`the child process died (signal ${e.signal}, code ${e.code}): ${e.stderr?.slice(-2000)}`);
            });
            const outcomes = JSON.parse(stdout) as {outcome: string, code?: string, message?: string}[];
            assert.equal(outcomes.length, damaged.length);
            for (const o of outcomes) {
                assert.deepEqual([o.outcome, o.code], ["error", "INDEX_CORRUPT"], JSON.stringify(o));
                assert.match(o.message!, /vectors\.usearch does not match the checksum recorded at build time/);
            }
        });
    });

    describe("an evaluation whose output cannot be written", () => {
        it("a write that fails after two records: runEvaluation rejects with that error, no slot stays held", async () => {
            const model = await SelfRagModel.load({modelPath: await tinyModel(), contextSize: 512, sequences: 6, gpu: false});
            try {
                const input = writeQuestions(path.join(tempDir, "failing-output.jsonl"), 12);
                const written: EvalRecord[] = [];
                await assert.rejects(runEvaluation(model, input, {task: "popqa", shortForm: {ndocs: 3, maxNewTokens: 24}, batchSize: 4,
                    onRecord: (record) => {
                        if (written.length === 2) throw Object.assign(new Error("ENOSPC: no space left on device, write"), {code: "ENOSPC"});
                        written.push(record);
                    }}), /ENOSPC/);
                assert.deepEqual(written.map((r) => r.id), ["q0", "q1"], "records are handed over in input order up to the failure");
                assert.equal(model.context.slots.inUse, 0);
                // The model is fine afterwards.
                const again = await runEvaluation(model, input, {task: "popqa", shortForm: {ndocs: 3, maxNewTokens: 24}, limit: 2});
                assert.equal(again.answered, 2);
            } finally {
                await model.dispose();
            }
        });

        it("selfrag eval on a full disk (/dev/full): one line naming the file and OUTPUT_WRITE_FAILED, exit code 1", async function () {
            if (!fs.existsSync("/dev/full")) this.skip();
            const input = writeQuestions(path.join(tempDir, "full-disk.jsonl"), 4);
            const result = await run(process.execPath, [cli, "eval", "--model", await tinyModel(), "--input", input, "--output", "/dev/full",
                "--task", "popqa", "--ndocs", "3", "--max-new-tokens", "24", "--context-size", "512", "--cpu"]).then(
                () => assert.fail("the evaluation succeeded on a full disk"), (e: {code: number, stderr: string}) => e);
            assert.equal(result.code, 1);
            assert.match(result.stderr, /^selfrag: cannot write to \/dev\/full: ENOSPC: no space left on device.*--resume \[OUTPUT_WRITE_FAILED\]\n$/);
        });
    });

    it("the CLI's output paths refuse to overwrite, and a resumed output that is not JSONL is refused by line", async () => {
        const input = writeQuestions(path.join(tempDir, "bad-resume.jsonl"), 3);
        const output = path.join(tempDir, "bad-resume-out.jsonl");
        fs.writeFileSync(output, "{\"id\": \"q0\"}\nnot json at all\n{\"id\": \"q2\"}\n");
        const result = await run(process.execPath, [cli, "eval", "--model", await tinyModel(), "--input", input, "--output", output, "--resume",
            "--task", "popqa", "--cpu"]).then(() => assert.fail("resumed from a damaged file"), (e: {code: number, stderr: string}) => e);
        assert.equal(result.code, 1);
        assert.match(result.stderr, /bad-resume-out\.jsonl:2: not a JSON record; cannot resume from this file \[INVALID_JSONL\]/);
        await assert.rejects(PassageIndex.open(path.join(tempDir, "no-such-index")), rejectsWith("INDEX_NOT_FOUND"));
    });
});
