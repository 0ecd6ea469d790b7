// `selfrag bench` on the fixture models: every output format parses and holds the rows asked for,
// the token counts behind the rates are the engine's (prompt x sequences evaluated, tokens
// generated), the naive peer gives selfrag's answer before it is timed, and bad options give coded
// one-line errors.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {promisify} from "node:util";
import {modelWithoutReflection, tinyModel} from "../test-support/fixtures.js";
import {formatBench} from "../lib/bench/benchReport.js";
import {runModelBench, type BenchResult} from "../lib/bench/ModelBench.js";

const run = promisify(execFile);
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

describe("selfrag bench", function () {
    this.timeout(300_000);
    let result: BenchResult;

    before(async () => {
        result = await runModelBench({modelPath: await tinyModel(), sequences: [1, 3], prompts: [64], generate: 12, repetitions: 2, ndocs: 2,
            maxNewTokens: 12, beamWidth: 2, maxDepth: 2, threads: [1], gpu: false});
    });

    it("holds the rows asked for, with counts from the engine", () => {
        const tests = result.rows.map((r) => `${r.kind}:${r.test}:${r.sequences}`);
        for (const expected of ["engine:pp64:1", "engine:tg12:1", "engine:pp64:3", "engine:tg12:3", "engine:fork128:3", "selfrag:short-form:2",
            "selfrag:short-form-saturated:4", "selfrag:long-form:4", "peer:short-form-naive:1"]) {
            assert.ok(tests.includes(expected), `${expected} in ${tests.join(", ")}`);
        }
        for (const r of result.rows) {
            assert.ok(r.mean > 0 && Number.isFinite(r.std) && r.repetitions === 2, JSON.stringify(r));
            if (r.test === "pp64") assert.equal(r.extra?.tokens, 64 * r.sequences, "every prompt token evaluated, counted by the engine");
            // tg12 generates 12 tokens per sequence through EOS, as llama-bench does (issue 24: the fixture's EOS
            // after 4 tokens made "tg32" a 4-token row).
            if (r.test === "tg12") assert.equal(r.extra?.tokens, 12 * r.sequences, "every generated token counted by the engine");
        }
        assert.equal(result.rows.find((r) => r.kind === "peer")?.extra?.same_answer, "yes", "the naive peer answers as selfrag does");
        assert.ok(result.header.parameters > 0 && result.header.sizeBytes > 0);
        assert.equal(result.header.quantization, "ALL_F32");
    });

    it("md, json, jsonl and csv parse back to the same rows", () => {
        const json = JSON.parse(formatBench(result, "json")) as BenchResult;
        assert.deepEqual(json.rows.map((r) => [r.test, r.sequences, r.mean]), result.rows.map((r) => [r.test, r.sequences, r.mean]));
        const jsonl = formatBench(result, "jsonl").trim().split("\n").map((l) => JSON.parse(l) as {test: string, mean: number, backend: string});
        assert.deepEqual(jsonl.map((r) => [r.test, r.mean, r.backend]), result.rows.map((r) => [r.test, r.mean, result.header.backend]));
        const csv = formatBench(result, "csv").trim().split("\n");
        const header = csv[0].split(",");
        assert.equal(csv.length, result.rows.length + 1);
        const meanAt = header.indexOf("mean");
        const testAt = header.indexOf("test");
        csv.slice(1).forEach((line, i) => {
            // The model path and CPU name hold no comma here, so a plain split is exact for the columns read.
            const cells = line.match(/("([^"]|"")*"|[^,]*)(,|$)/g)!.map((c) => c.replace(/,$/, ""));
            assert.equal(cells[testAt], result.rows[i].test);
            assert.equal(Number(cells[meanAt]), result.rows[i].mean);
        });
        const md = formatBench(result, "md").split("\n").filter((l) => l.startsWith("| ") && !l.startsWith("| kind"));
        assert.equal(md.length, result.rows.length);
        assert.match(md[0], /^\| engine \| pp64 \| 1 \| 1 \| [\d.]+ ± [\d.]+ \| t\/s \|/);
    });

    it("the CLI writes the table; bad options and a model without reflection tokens are coded one-line errors", async () => {
        const model = await tinyModel();
        const {stdout} = await run("node", [cli, "bench", "--model", model, "--cpu", "--rows", "engine", "--sequences", "2", "--prompt", "32",
            "--gen", "4", "-r", "1", "--output", "csv"]);
        assert.equal(stdout.trim().split("\n").length, 1 + 3, "header + pp32, tg4, fork128");
        const fails = async (args: string[], code: string, pattern: RegExp) => {
            const error = await run("node", [cli, "bench", ...args]).then(() => undefined, (e: {stderr: string, code: number}) => e);
            assert.ok(error != null, `${args.join(" ")} should fail`);
            assert.equal(error.code, 1);
            // Progress lines ("bench: ...") may come first; the failure is one line, the last.
            const lines = error.stderr.trim().split("\n").filter((l) => !l.startsWith("bench: "));
            assert.equal(lines.length, 1, error.stderr);
            assert.match(lines[0], new RegExp(`^selfrag: .*${pattern.source}.* \\[${code}\\]$`));
        };
        await fails(["--model", model, "--sequences", "0"], "INVALID_ARGUMENT", /--sequences/);
        // More threads than cores: said on stderr before anything runs (issue 24, item 7).
        const cores = os.availableParallelism();
        const over = await run("node", [cli, "bench", "--model", model, "--cpu", "--rows", "engine", "--sequences", "1", "--prompt", "8",
            "--gen", "2", "-r", "1", "--threads", `1,${cores + 1}`, "--output", "csv"]);
        assert.match(over.stderr, new RegExp(`^selfrag: warning: --threads ${cores + 1} exceeds the ${cores} cores? this process may use .*contend`, "m"));
        assert.equal(over.stdout.trim().split("\n").length, 1 + 2 * 2, "both thread counts still measured: pp8, tg2 each");
        await fails(["--model", model, "--output", "xml"], "INVALID_ARGUMENT", /--output/);
        await fails(["--model", await modelWithoutReflection(), "--cpu", "--rows", "engine"], "MISSING_REFLECTION_TOKENS", /reflection/);
    });

    it("`npm run bench -- gpu` without a GPU measures nothing and leaves the tracked bench/results/gpu.* as they were (issue 24, item 7)", async function () {
        const results = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "results");
        const files = ["gpu.json", "gpu.md"].map((f) => path.join(results, f));
        const before = files.map((f) => fs.existsSync(f) ? fs.readFileSync(f, "utf8") : undefined);
        const runner = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "bench", "run.js");
        const {stdout} = await run("node", [runner, "gpu"], {maxBuffer: 1 << 24});
        if (/Device: /.test(stdout)) this.skip(); // a CUDA device after all: the run measured and saved
        assert.match(stdout, /bench gpu: Skipped: no CUDA device here .* bench\/results\/gpu\.\{json,md\} left as they were\./);
        assert.match(stdout, /nothing measured, bench\/results not written\)/);
        assert.deepEqual(files.map((f) => fs.existsSync(f) ? fs.readFileSync(f, "utf8") : undefined), before);
    });
});
