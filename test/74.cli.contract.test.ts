// The CLI's contract (issue 17, items 5 and 6): every failure is exactly one line
// `selfrag: <message> [CODE]` on stderr with exit code 1; --help / -h everywhere; --version; a
// closed stdout ends quietly; option combinations that would do nothing are refused; eval says
// once when records are answered without retrieval; traces carry the question's id and text.
import assert from "node:assert/strict";
import {spawn} from "node:child_process";
import {createHash} from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {TASKS} from "../lib/selfrag/prompts.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";
import {runCli} from "../test-support/cli.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "dist", "lib", "cli", "main.js");
const dir = path.join(tempDir, "cli-contract");

interface Result {stdout: string, stderr: string, code: number}

const selfrag = (args: string[], env: Record<string, string> = {}, script = cli): Promise<Result> =>
    runCli(args, {env: {SELFRAG_DEBUG: "", ...env}, script});

/** The contract: exit 1, exactly one line on stderr naming a code, no stack trace. */
function assertOneLineFailure(result: Result, code: string, message?: RegExp): string {
    assert.equal(result.code, 1, `exit code (stderr: ${result.stderr})`);
    const lines = result.stderr.split("\n");
    assert.equal(lines.length, 2, `exactly one line on stderr, got:\n${result.stderr}`);
    assert.equal(lines[1], "");
    const line = lines[0];
    assert.match(line, /^selfrag: .+ \[[A-Z_]+\]$/);
    assert.ok(line.endsWith(` [${code}]`), `code ${code} in: ${line}`);
    assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
    if (message != null) assert.match(line, message);
    return line;
}

const question = "What is the capital of France?";
const passages = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"}
];

describe("selfrag CLI contract", () => {
    let passagesFile: string;
    let model: string;
    before(async () => {
        fs.mkdirSync(dir, {recursive: true});
        passagesFile = path.join(dir, "passages.jsonl");
        fs.writeFileSync(passagesFile, passages.map((p) => JSON.stringify(p)).join("\n") + "\n");
        model = await tinyModel();
    });

    describe("one line per failure", () => {
        it("an unknown command: one line with the commands, nothing on stdout", async () => {
            const result = await selfrag(["frobnicate"]);
            assertOneLineFailure(result, "INVALID_ARGUMENT", /unknown command "frobnicate".*ask/);
            assert.equal(result.stdout, "");
            assertOneLineFailure(await selfrag(["--frobnicate"]), "INVALID_ARGUMENT", /unknown option --frobnicate/);
            assertOneLineFailure(await selfrag(["index", "frobnicate"]), "INVALID_ARGUMENT", /unknown index subcommand "frobnicate"/);
        });

        it("parseArgs errors: unknown options, missing values, unexpected arguments name the option", async () => {
            assertOneLineFailure(await selfrag(["ask", "--frobnicate", "Q?"]), "INVALID_ARGUMENT", /unknown option --frobnicate .*selfrag ask/);
            assertOneLineFailure(await selfrag(["search", "--index"]), "INVALID_ARGUMENT", /option --index needs a value/);
            assertOneLineFailure(await selfrag(["rerank", "--traces", "--json"]), "INVALID_ARGUMENT", /option --traces needs a value/);
            assertOneLineFailure(await selfrag(["rerank", "--json=yes"]), "INVALID_ARGUMENT", /option --json takes no value/);
            assertOneLineFailure(await selfrag(["eval", "extra"]), "INVALID_ARGUMENT", /unexpected argument "extra".*selfrag eval/);
            assertOneLineFailure(await selfrag(["index", "build", "-x"]), "INVALID_ARGUMENT", /unknown option -x .*selfrag index build/);
        });

        it("a negative number after an option is its value (--w-rel -1 as --w-rel=-1)", async () => {
            const result = await selfrag(["ask", "--model", model, "--passages", passagesFile, "--cpu", "--json", "--w-rel", "-1", "--w-sup", "-0.5", question]);
            assert.equal(result.code, 0, result.stderr);
            const inline = await selfrag(["ask", "--model", model, "--passages", passagesFile, "--cpu", "--json", "--w-rel=-1", "--w-sup=-0.5", question]);
            assert.equal(inline.code, 0, inline.stderr);
            const scores = (r: Result) => (JSON.parse(r.stdout) as {candidates: {score: number}[]}).candidates.map((c) => c.score);
            assert.deepEqual(scores(result), scores(inline));
            // not a number: still refused, in one line naming the option
            assertOneLineFailure(await selfrag(["ask", "--passages", passagesFile, "--threshold", "-x", question]), "INVALID_ARGUMENT", /--threshold/);
        });

        it("MODEL_NOT_FOUND without a model: one line", async () => {
            const home = path.join(dir, "empty-home");
            const result = await selfrag(["ask", "--passages", passagesFile, question], {SELFRAG_HOME: home, SELFRAG_MODEL: ""});
            assertOneLineFailure(result, "MODEL_NOT_FOUND", /--model/);
        });

        it("ADDON_NOT_BUILT and ADDON_LOAD_FAILED: one line", async () => {
            // A copy of the package without build/: the addon is not built there.
            const copy = path.join(dir, "unbuilt");
            fs.rmSync(copy, {recursive: true, force: true});
            fs.mkdirSync(path.join(copy, "dist"), {recursive: true});
            fs.cpSync(path.join(root, "dist", "lib"), path.join(copy, "dist", "lib"), {recursive: true});
            fs.copyFileSync(path.join(root, "package.json"), path.join(copy, "package.json"));
            fs.symlinkSync(path.join(root, "node_modules"), path.join(copy, "node_modules"), "dir");
            const unbuilt = await selfrag(["inspect", "--model", model, "--prompt", "x", "--cpu"], {SELFRAG_ADDON: ""},
                path.join(copy, "dist", "lib", "cli", "main.js"));
            assertOneLineFailure(unbuilt, "ADDON_NOT_BUILT", /build:addon/);
            const broken = await selfrag(["inspect", "--model", model, "--prompt", "x", "--cpu"], {SELFRAG_ADDON: path.join(dir, "nope.node")});
            assertOneLineFailure(broken, "ADDON_LOAD_FAILED", /nope\.node.*build:addon/);
        });

        it("an unexpected error: one line with [INTERNAL]; the stack only with SELFRAG_DEBUG=1", async () => {
            // A directory as the traces file: the read fails with a plain EISDIR error.
            const result = await selfrag(["rerank", "--traces", dir]);
            assertOneLineFailure(result, "INTERNAL", /^selfrag: unexpected error: .*EISDIR/);
            const debug = await selfrag(["rerank", "--traces", dir], {SELFRAG_DEBUG: "1"});
            assert.equal(debug.code, 1);
            assert.match(debug.stderr, /^selfrag: unexpected error: .*\[INTERNAL\]\n/);
            assert.match(debug.stderr, /\[INTERNAL\]\nError: EISDIR/, "the stack with SELFRAG_DEBUG=1");
        });
    });

    describe("--help, -h, --version", () => {
        it("--help and -h on every command and index subcommand print its usage and exit 0", async () => {
            const top = await selfrag(["--help"]);
            assert.equal(top.code, 0, top.stderr);
            const commands = [...top.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]);
            assert.ok(commands.includes("ask") && commands.includes("index") && commands.length >= 9, top.stdout);
            assert.equal((await selfrag(["-h"])).stdout, top.stdout);
            const invocations = [...commands.map((c) => [c]), ["index", "build"], ["index", "info"]];
            for (const command of invocations) {
                for (const flag of ["--help", "-h"]) {
                    const result = await selfrag([...command, flag]);
                    assert.equal(result.code, 0, `${command.join(" ")} ${flag}: ${result.stderr}`);
                    assert.equal(result.stderr, "", `${command.join(" ")} ${flag}`);
                    assert.match(result.stdout, new RegExp(`^Usage: selfrag ${command[0]}\\b`), `${command.join(" ")} ${flag}`);
                }
            }
        });

        it("--version and -v print package.json's version", async () => {
            const {version} = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {version: string};
            for (const flag of ["--version", "-v"]) {
                const result = await selfrag([flag]);
                assert.equal(result.code, 0, result.stderr);
                assert.equal(result.stdout, `${version}\n`);
            }
        });

        it("a closed stdout ends quietly with exit code 0 (demo | head -1, --help | head -1)", async function () {
            this.timeout(180_000);
            const firstLineThenClose = (args: string[]) => new Promise<{code: number | null, stderr: string, first: string}>((resolve, reject) => {
                const child = spawn(process.execPath, [cli, ...args], {
                    env: {...process.env, SELFRAG_HOME: path.join(dir, "demo-home"), SELFRAG_MODEL: "", SELFRAG_DEBUG: ""},
                    stdio: ["ignore", "pipe", "pipe"]
                });
                let out = "";
                let first: string | undefined;
                let stderr = "";
                child.stdout.on("data", (chunk: Buffer) => {
                    out += chunk.toString();
                    if (first == null && out.includes("\n")) {
                        first = out.slice(0, out.indexOf("\n"));
                        child.stdout.destroy();
                    }
                });
                child.stderr.on("data", (chunk: Buffer) => {
                    stderr += chunk.toString();
                });
                child.on("error", reject);
                child.on("close", (code) => resolve({code, stderr, first: first ?? ""}));
            });
            const demo = await firstLineThenClose(["demo", "--cpu"]);
            assert.equal(demo.stderr, "");
            assert.equal(demo.code, 0);
            assert.match(demo.first, /FIXTURE model/);
            const help = await firstLineThenClose(["--help"]);
            assert.equal(help.stderr, "");
            assert.equal(help.code, 0);
            assert.match(help.first, /^Usage: selfrag/);
        });
    });

    describe("validation", () => {
        // Each would run (exit 0) if the option were accepted: a model and passages are given.
        const ask = (...args: string[]) => selfrag(["ask", "--model", model, "--passages", passagesFile, "--cpu", ...args, question]);

        it("ask --task nosuch is refused with the list of tasks", async () => {
            const line = assertOneLineFailure(await ask("--task", "nosuch"), "INVALID_ARGUMENT", /--task.*"nosuch"/);
            for (const task of TASKS) assert.ok(line.includes(task), `${task} listed in: ${line}`);
            assertOneLineFailure(await ask("--mode", "sometimes"), "INVALID_ARGUMENT", /--mode.*"sometimes"/);
        });

        it("long-form options without --long are refused, naming both options", async () => {
            for (const args of [["--beam-width", "3"], ["--max-depth", "3"], ["--ignore-cont"], ["--context", "interleaved"]]) {
                const line = assertOneLineFailure(await ask(...args), "INVALID_ARGUMENT");
                assert.ok(line.includes(args[0]) && line.includes("--long"), line);
            }
            const evalFile = path.join(dir, "eval-refused.jsonl");
            fs.writeFileSync(evalFile, JSON.stringify({question, answers: ["Paris"]}) + "\n");
            const evaluated = await selfrag(["eval", "--model", model, "--input", evalFile, "--output", path.join(dir, "eval-refused.out.jsonl"),
                "--beam-width", "3", "--cpu"]);
            const line = assertOneLineFailure(evaluated, "INVALID_ARGUMENT");
            assert.ok(line.includes("--beam-width") && line.includes("--long"), line);
        });

        it("short-form options with --long are refused: --save-traces, --choices", async () => {
            const traces = path.join(dir, "long-traces.jsonl");
            const saved = assertOneLineFailure(await ask("--long", "--max-depth", "2", "--save-traces", traces), "INVALID_ARGUMENT");
            assert.ok(saved.includes("--save-traces") && saved.includes("--long"), saved);
            assert.ok(!fs.existsSync(traces));
            const choices = assertOneLineFailure(await ask("--long", "--max-depth", "2", "--choices", "Paris|Rome"), "INVALID_ARGUMENT");
            assert.ok(choices.includes("--choices") && choices.includes("--long"), choices);
        });

        it("eval warns once per run when records have no passages and there is no --index", async () => {
            const input = path.join(dir, "eval-no-passages.jsonl");
            fs.writeFileSync(input, [
                {id: "a", question, answers: ["Paris"]},
                {id: "b", question: "Say hello.", answers: ["hello"]},
                {id: "c", question: "What is the capital of Germany?", answers: ["Berlin"], ctxs: passages},
                {id: "d", question: "What is the capital of Italy?", answers: ["Rome"]}
            ].map((r) => JSON.stringify(r)).join("\n") + "\n");
            const warning = /^selfrag: warning: 3 records have no passages and no --index was given: answered without retrieval$/;
            for (const mode of ["always", "adaptive"]) {
                const output = path.join(dir, `eval-no-passages.${mode}.jsonl`);
                fs.rmSync(output, {force: true});
                const result = await selfrag(["eval", "--model", model, "--input", input, "--output", output, "--mode", mode,
                    "--max-new-tokens", "16", "--cpu"]);
                assert.equal(result.code, 0, result.stderr);
                const warnings = result.stderr.split("\n").filter((l) => l.startsWith("selfrag: warning:"));
                assert.equal(warnings.length, 1, result.stderr);
                assert.match(warnings[0], warning);
            }
            const never = path.join(dir, "eval-no-passages.never.jsonl");
            fs.rmSync(never, {force: true});
            const quiet = await selfrag(["eval", "--model", model, "--input", input, "--output", never, "--mode", "never", "--max-new-tokens", "16", "--cpu"]);
            assert.equal(quiet.code, 0, quiet.stderr);
            assert.doesNotMatch(quiet.stderr, /warning/);
        });

        it("ask --save-traces records the question's id (--id, else its SHA-1 prefix) and text; rerank reads old traces", async () => {
            const traces = path.join(dir, "traces.jsonl");
            fs.rmSync(traces, {force: true});
            assert.equal((await ask("--save-traces", traces)).code, 0);
            const withId = await ask("--save-traces", traces, "--id", "q7");
            assert.equal(withId.code, 0, withId.stderr);
            const records = fs.readFileSync(traces, "utf8").trim().split("\n").map((l) => JSON.parse(l) as {id: string, question?: string});
            const sha1 = createHash("sha1").update(question).digest("hex").slice(0, 8);
            assert.deepEqual(records.map((r) => [r.id, r.question]), [[sha1, question], ["q7", question]]);
            // --id names a trace record: without --save-traces it would do nothing
            const line = assertOneLineFailure(await ask("--id", "q8"), "INVALID_ARGUMENT");
            assert.ok(line.includes("--id") && line.includes("--save-traces"), line);

            const old = path.join(dir, "old-traces.jsonl");
            fs.writeFileSync(old, records.map(({question: _q, ...r}) => JSON.stringify({...r, id: "0"})).join("\n") + "\n");
            const reranked = await selfrag(["rerank", "--traces", old, "--json"]);
            assert.equal(reranked.code, 0, reranked.stderr);
            assert.deepEqual(reranked.stdout.trim().split("\n").map((l) => (JSON.parse(l) as {id: string}).id), ["0", "0"]);
            const current = await selfrag(["rerank", "--traces", traces, "--json", "--w-rel", "-1"]);
            assert.equal(current.code, 0, current.stderr);
            assert.deepEqual(current.stdout.trim().split("\n").map((l) => (JSON.parse(l) as {id: string}).id), [sha1, "q7"]);
        });
    });
});
