// Cold start (issue 10): importing the package loads no native module, `--help` answers without
// one, and a process that finds the CPU runtime recorded (engine/runtimeRecord.ts) answers exactly
// as one that went through node-llama-cpp's getLlama(). No timing is asserted: the start-up times
// are measured by `npm run bench -- startup`.
import assert from "node:assert/strict";
import {execFile} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {tempDir, tinyModel} from "../test-support/fixtures.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "dist", "lib", "cli", "main.js");

interface Run {
    stdout: string;
    stderr: string;
    code: number;
}

function node(args: readonly string[], options: {cwd?: string, env?: Record<string, string | undefined>} = {}): Promise<Run> {
    return new Promise((resolve) => {
        const env = {...process.env, SELFRAG_DEBUG: "", SELFRAG_TIMINGS: "", SELFRAG_RUNTIME_CACHE: "", ...options.env};
        execFile(process.execPath, args, {cwd: options.cwd, env, timeout: 20_000, maxBuffer: 1 << 24}, (error, stdout, stderr) => {
            const code = error == null ? 0 : typeof (error as {code?: unknown}).code === "number" ? (error as {code: number}).code : -1;
            resolve({stdout, stderr, code});
        });
    });
}

/** A preload that reports every native module a process loads (every .node file goes through process.dlopen). */
const dlopenSpy = path.join(tempDir, "dlopen-spy.mjs");

describe("cold start", () => {
    let packageUser: string;

    before(() => {
        fs.writeFileSync(dlopenSpy, "const dlopen = process.dlopen;\n" +
            "process.dlopen = function (module, filename, ...rest) {\n" +
            "    process.stderr.write(`dlopen ${filename}\\n`);\n" +
            "    return dlopen.call(this, module, filename, ...rest);\n" +
            "};\n");
        // A project depending on selfrag: node_modules/selfrag is this checkout.
        packageUser = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-user-"));
        fs.mkdirSync(path.join(packageUser, "node_modules"));
        fs.symlinkSync(root, path.join(packageUser, "node_modules", "selfrag"), "dir");
    });

    after(() => {
        fs.rmSync(packageUser, {recursive: true, force: true});
    });

    it("node -e \"import('selfrag')...\" prints function and exits (usearch is not touched)", async () => {
        const result = await node(["-e", "import('selfrag').then(m => console.log(typeof m.SelfRagModel))"], {cwd: packageUser});
        assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`);
        assert.equal(result.stdout, "function\n");
    });

    it("importing the package loads no native module", async () => {
        const result = await node(["--import", dlopenSpy, "--input-type=module", "-e",
            "const m = await import('selfrag'); console.log(Object.keys(m).length > 50, typeof m.PassageIndex, typeof m.loadAddon)"],
        {cwd: packageUser});
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, "true function function\n");
        assert.doesNotMatch(result.stderr, /dlopen/, "a native module was loaded at import");
    });

    it("selfrag --help and every selfrag <command> --help answer without loading a native module", async () => {
        const help = await node(["--import", dlopenSpy, cli, "--help"]);
        assert.equal(help.code, 0, help.stderr);
        assert.match(help.stdout, /^Usage: selfrag <command>/);
        assert.doesNotMatch(help.stderr, /dlopen/);
        const commands = [...help.stdout.matchAll(/^ {2}([a-z][\w-]*) +\S/gm)].map((m) => m[1]);
        assert.ok(commands.includes("ask") && commands.includes("inspect") && commands.includes("serve") && commands.length >= 10,
            `commands listed: ${commands.join(", ")}`);
        const runs = await Promise.all(commands.map((c) => node(["--import", dlopenSpy, cli, c, "--help"])));
        runs.forEach((run, i) => {
            assert.equal(run.code, 0, `${commands[i]} --help: ${run.stderr}`);
            assert.match(run.stdout, new RegExp(`^Usage: selfrag ${commands[i]}\\b`), `${commands[i]} --help`);
            assert.doesNotMatch(run.stderr, /dlopen/, `${commands[i]} --help loaded a native module`);
        });
    });

    describe("the recorded CPU runtime", () => {
        let home: string;
        let passages: string;
        const recordFile = () => path.join(home, "runtime", "llama-false.json");
        const timed = (args: string[], env: Record<string, string> = {}) =>
            node([cli, ...args], {env: {SELFRAG_HOME: home, SELFRAG_TIMINGS: "1", ...env}});
        const via = (run: Run) => /^selfrag-timing backend [\d.]+ (\S+)$/m.exec(run.stderr)?.[1];
        const withoutTimings = (stderr: string) => stderr.split("\n").filter((l) => !l.startsWith("selfrag-timing ")).join("\n");

        before(() => {
            home = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-home-"));
            passages = path.join(tempDir, "cold-start-passages.jsonl");
            fs.writeFileSync(passages, [
                {id: "p1", title: "Paris", text: "Paris is the capital and largest city of France."},
                {id: "p2", title: "Lyon", text: "Lyon is a city in France on the Rhone."}
            ].map((p) => JSON.stringify(p)).join("\n") + "\n");
        });

        after(() => {
            fs.rmSync(home, {recursive: true, force: true});
        });

        it("the first process goes through getLlama() and records the runtime; the next loads it directly, with the same answers", async () => {
            const inspectArgs = ["inspect", "--model", await tinyModel(), "--question", "What is the capital of France?", "--json", "--cpu"];
            const askArgs = ["ask", "--model", await tinyModel(), "--passages", passages, "--mode", "always", "--max-new-tokens", "12",
                "--json", "--cpu", "What is the capital of France?"];
            const first = await timed(inspectArgs);
            assert.equal(first.code, 0, first.stderr);
            assert.equal(via(first), "node-llama-cpp");
            assert.ok(fs.existsSync(recordFile()), "the runtime was recorded");
            const firstAsk = await timed(askArgs, {SELFRAG_RUNTIME_CACHE: "0"});
            assert.equal(via(firstAsk), "node-llama-cpp", "SELFRAG_RUNTIME_CACHE=0 ignores the record");

            const second = await timed(inspectArgs);
            assert.equal(second.code, 0, second.stderr);
            assert.equal(via(second), "direct");
            assert.equal(second.stdout, first.stdout, "inspect answers the same either way");
            const secondAsk = await timed(askArgs);
            assert.equal(via(secondAsk), "direct");
            assert.equal(secondAsk.code, 0, secondAsk.stderr);
            assert.equal(secondAsk.stdout, firstAsk.stdout, "ask answers the same either way");
            assert.equal(withoutTimings(secondAsk.stderr), withoutTimings(firstAsk.stderr));
            for (const phase of ["import", "backend", "model", "context", "first-decode", "done"]) {
                assert.match(secondAsk.stderr, new RegExp(`^selfrag-timing ${phase} [\\d.]+`, "m"), `SELFRAG_TIMINGS=1 marks ${phase}`);
            }
        });

        it("a record that no longer matches (another binary, another Node) is ignored and rewritten", async () => {
            const record = JSON.parse(fs.readFileSync(recordFile(), "utf8")) as {fingerprint: string};
            fs.writeFileSync(recordFile(), JSON.stringify({...record, fingerprint: "{}"}));
            const args = ["inspect", "--model", await tinyModel(), "--question", "Q?", "--json", "--cpu"];
            const stale = await timed(args);
            assert.equal(stale.code, 0, stale.stderr);
            assert.equal(via(stale), "node-llama-cpp");
            assert.notEqual((JSON.parse(fs.readFileSync(recordFile(), "utf8")) as {fingerprint: string}).fingerprint, "{}");
            fs.writeFileSync(recordFile(), "not json");
            const corrupt = await timed(args);
            assert.equal(corrupt.code, 0, corrupt.stderr);
            assert.equal(via(corrupt), "node-llama-cpp");
            assert.equal(via(await timed(args)), "direct");
        });
    });
});
