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
import {packageRoot} from "../lib/paths.js";
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
        // One record per install and gpu option (llama-false-<install>.json).
        const recordFile = () => {
            const dir = path.join(home, "runtime");
            const records = fs.readdirSync(dir).filter((f) => /^llama-false-[0-9a-f]{16}\.json$/.test(f));
            assert.equal(records.length, 1, `one record for this install: ${fs.readdirSync(dir).join(", ")}`);
            return path.join(dir, records[0]);
        };
        // Without a record, a process of an install with a compiled CPU backend still loads directly
        // (node-llama-cpp's choice of binary foretold and tested); without one it goes through getLlama().
        let firstVia: string;
        const timed = (args: string[], env: Record<string, string> = {}) =>
            node([cli, ...args], {env: {SELFRAG_HOME: home, SELFRAG_TIMINGS: "1", ...env}});
        const timedAny = timed;
        const via = (run: Run) => /^selfrag-timing backend [\d.]+ (\S+)$/m.exec(run.stderr)?.[1];
        const withoutTimings = (stderr: string) => stderr.split("\n").filter((l) => !l.startsWith("selfrag-timing ")).join("\n");

        before(async () => {
            const {compiledCpuBackend} = await import("../lib/engine/cpuBackend.js");
            firstVia = compiledCpuBackend() != null ? "direct" : "node-llama-cpp";
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

        it("the first process records the runtime (through getLlama(), or directly on a compiled backend); the next loads it directly, with the same answers", async () => {
            const inspectArgs = ["inspect", "--model", await tinyModel(), "--question", "What is the capital of France?", "--json", "--cpu"];
            const askArgs = ["ask", "--model", await tinyModel(), "--passages", passages, "--mode", "always", "--max-new-tokens", "12",
                "--json", "--cpu", "What is the capital of France?"];
            const first = await timed(inspectArgs);
            assert.equal(first.code, 0, first.stderr);
            assert.equal(via(first), firstVia);
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
            assert.equal(via(stale), firstVia);
            assert.notEqual((JSON.parse(fs.readFileSync(recordFile(), "utf8")) as {fingerprint: string}).fingerprint, "{}");
            fs.writeFileSync(recordFile(), "not json");
            const corrupt = await timed(args);
            assert.equal(corrupt.code, 0, corrupt.stderr);
            assert.equal(via(corrupt), firstVia);
            assert.equal(via(await timed(args)), "direct");
        });

        it("the ggml backends the scan kept are pinned for this CPU and loaded from there; a broken pin falls back to the scan and is pinned again", async () => {
            // The prebuilt backends (a compiled one, test/24.model.cpu-backend, needs no pin): the first prebuilt process pins.
            const prebuilt = {SELFRAG_CPU_BACKEND: "prebuilt"};
            const timed = (args: string[], env: Record<string, string> = {}) => timedAny(args, {...prebuilt, ...env});
            const pinning = await timed(["inspect", "--model", await tinyModel(), "--question", "Q?", "--json", "--cpu"]);
            assert.equal(pinning.code, 0, pinning.stderr);
            const runtime = path.join(home, "runtime");
            const pins = fs.readdirSync(runtime).filter((f) => f.startsWith("ggml-backends-") && !f.endsWith(".partial"));
            assert.equal(pins.length, 1, `one pin for this CPU and binary: ${fs.readdirSync(runtime).join(", ")}`);
            const pin = path.join(runtime, pins[0]);
            const linked = fs.readdirSync(pin);
            assert.ok(linked.some((f) => /^libggml-cpu[\w-]*\.so$/.test(f)), `the CPU backend is pinned: ${linked.join(", ")}`);
            for (const f of linked) assert.ok(fs.existsSync(fs.readlinkSync(path.join(pin, f))), `${f} links to the library`);
            const args = ["inspect", "--model", await tinyModel(), "--question", "What is the capital of France?", "--json", "--cpu"];
            // glibc's loader names every library it opens (LD_DEBUG=files, on stderr).
            const cpuBackendsOpened = (run: Run) => [...new Set([...run.stderr.matchAll(/\bfile=(\S*\/libggml-cpu[\w.-]*\.so) \[/g)].map((m) => m[1]))];
            const pinned = await timed(args, {LD_DEBUG: "files"});
            assert.equal(pinned.code, 0, pinned.stderr);
            assert.equal(via(pinned), "direct");
            const scanned = await timed(args, {SELFRAG_RUNTIME_CACHE: "0", LD_DEBUG: "files"});
            assert.equal(scanned.stdout, pinned.stdout, "the pinned backends answer as getLlama()'s");
            if (cpuBackendsOpened(scanned).length > 0) {
                assert.ok(cpuBackendsOpened(scanned).length > 1, `the scan opens every CPU variant: ${cpuBackendsOpened(scanned).join(", ")}`);
                assert.deepEqual(cpuBackendsOpened(pinned).map((f) => path.dirname(f)), [pin], "the pinned process opens the pinned variant only");
            }
            // Links to nothing: ggml loads nothing from the pin, the process scans the binary's folder.
            for (const f of linked) {
                fs.rmSync(path.join(pin, f));
                fs.symlinkSync(path.join(runtime, "gone", f), path.join(pin, f));
            }
            const broken = await timed(args);
            assert.equal(broken.code, 0, broken.stderr);
            assert.equal(via(broken), "direct");
            assert.equal(broken.stdout, pinned.stdout);
            // ... and pins again what it kept.
            assert.deepEqual(fs.readdirSync(pin), linked);
            for (const f of linked) assert.ok(fs.existsSync(fs.readlinkSync(path.join(pin, f))), `${f} is linked again`);
        });

        it("with a CPU backend compiled at install, a recorded process opens that one CPU library and no prebuilt variant", async function () {
            const compiled = path.join(packageRoot, "build", "cpu-backend");
            if (!fs.existsSync(path.join(compiled, "backend.json"))) this.skip();  // not compiled on this platform: the pin above is the path
            const args = ["inspect", "--model", await tinyModel(), "--question", "What is the capital of France?", "--json", "--cpu"];
            const run = await timedAny(args, {LD_DEBUG: "files"});
            assert.equal(run.code, 0, run.stderr);
            assert.equal(via(run), "direct");
            const opened = [...new Set([...run.stderr.matchAll(/\bfile=(\S*\/libggml-cpu[\w.-]*\.so) \[/g)].map((m) => m[1]))];
            assert.equal(opened.length, 1, `one CPU library opened: ${opened.join(", ")}`);
            assert.equal(path.dirname(opened[0]), compiled);
        });
    });

    it("the header check finds the reflection tokens on its way through the vocabulary: first occurrence, -1 when absent", async () => {
        const {GgufWriter, GgufType} = await import("../lib/gguf/GgufWriter.js");
        const {readGgufLayoutSync} = await import("../lib/gguf/GgufReader.js");
        // Enough strings to cross many read windows, lengths varied so sought ones straddle window ends.
        const tokens = Array.from({length: 60_000}, (_, i) => `tok${i}` + "x".repeat(i % 23));
        const sought = ["[Retrieval]", "[No Retrieval]", "<paragraph>", "[Absent]", "tok59999" + "x".repeat(59999 % 23), "é[ü]"];
        for (const [at, text] of [[40_000, "[Retrieval]"], [7, "[No Retrieval]"], [50_001, "[Retrieval]"], [33_333, "<paragraph>"], [2, "é[ü]"]] as const) {
            tokens[at] = text;
        }
        const file = path.join(tempDir, "finder.gguf");
        await new GgufWriter().str("general.architecture", "llama")
            .set("tokenizer.ggml.tokens", {type: GgufType.ARRAY, itemType: GgufType.STRING, value: tokens})
            .tensor("t", [4], () => Float32Array.of(1, 2, 3, 4)).write(file);
        const fd = fs.openSync(file, "r");
        try {
            const layout = readGgufLayoutSync(fd, fs.fstatSync(fd).size, sought);
            assert.deepEqual(Array.from(layout.tokenIds!), sought.map((t) => tokens.indexOf(t)));
            assert.deepEqual(layout.tensors, readGgufLayoutSync(fd, fs.fstatSync(fd).size).tensors, "the layout is the same with or without");
        } finally {
            fs.closeSync(fd);
        }
    });

    it("a model sized to one prompt (sizeToPrompt, as inspect loads) answers as a full context and overflows the same", async () => {
        const {SelfRagModel} = await import("../lib/SelfRagModel.js");
        const REFLECTION_TEXTS = (await import("../lib/engine/ReflectionTokens.js")).REFLECTION_TOKENS.map((t) => t.text);
        const text = "### Instruction:\nWhat is the capital of France?\n\n### Response:\n";
        const full = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 1, contextSize: 4096, gpu: false});
        const sized = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 1, contextSize: 4096, gpu: false, sizeToPrompt: text});
        try {
            assert.equal(sized.context.info.contextSize, 256, "the prompt's tokens rounded up to 256 cells");
            assert.equal(full.context.info.contextSize, 4096);
            assert.deepEqual(sized.reflection.ids, full.findTokens(REFLECTION_TEXTS), "the header's ids are llama.cpp's");
            assert.deepEqual(await sized.inspect(text), await full.inspect(text));
            // answer() imports the flows on first use (this load did not wait for them).
            const answer = await sized.answer("What is the capital of France?", {passages: [], maxNewTokens: 4, mode: "never"});
            assert.equal(typeof answer.answer, "string");
        } finally {
            await Promise.all([full.dispose(), sized.dispose()]);
        }
        const long = "word ".repeat(5000);
        const capped = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 1, contextSize: 4096, gpu: false, sizeToPrompt: long});
        try {
            assert.equal(capped.context.info.contextSize, 4096, "never more than contextSize");
            await assert.rejects(capped.inspect(long), {code: "CONTEXT_OVERFLOW"});
        } finally {
            await capped.dispose();
        }
    });

    it("selfrag ask sizes its slots to the question (prompt, longest passage, budget): the same answer as a full context", async () => {
        const passages = path.join(tempDir, "sizing-passages.jsonl");
        fs.writeFileSync(passages, [
            {title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
            {title: "Rome", text: `Rome is the capital city of Italy. ${"It lies on the Tiber. ".repeat(12)}`},
            {title: "Vienna", text: "Vienna is the capital of Austria."}
        ].map((p) => JSON.stringify(p)).join("\n") + "\n");
        const ask = async (...extra: string[]) => {
            const run = await node([cli, "ask", "--model", await tinyModel(), "--passages", passages, "--mode", "always", "--ndocs", "3",
                "--max-new-tokens", "40", "--cpu", "--json", ...extra, "What is the capital of France?"], {env: {SELFRAG_TIMINGS: "1"}});
            assert.equal(run.code, 0, run.stderr);
            return run;
        };
        const sized = await ask();
        const full = await ask("--context-size", "2048");
        const answer = (run: Run) => JSON.parse(run.stdout) as {answer: string, candidates: {text: string, score: number}[]};
        assert.deepEqual(answer(sized), answer(full));
        assert.equal(answer(sized).candidates.length, 3);
        // The size ask loads with: the longest slot (prompt + the Rome passage + 40 + 16 tokens) in 256 cells.
        const {shortFormSizing} = await import("../lib/cli/askCommand.js");
        const {planShortForm, planLongForm} = await import("../lib/selfrag/plan.js");
        const {SelfRagModel} = await import("../lib/SelfRagModel.js");
        const {readPassagesJsonl} = await import("../lib/selfrag/passages.js");
        const sizing = shortFormSizing(planShortForm({passages: await readPassagesJsonl(passages), maxNewTokens: 40}), "What is the capital of France?");
        const model = await SelfRagModel.load({modelPath: await tinyModel(), sequences: 3, contextSize: 2048, gpu: false, ...sizing});
        try {
            assert.equal(model.context.info.contextPerSequence, 256);
            assert.equal(model.context.info.batchSize, 512, "a batch spans the slots");
        } finally {
            await model.dispose();
        }
        assert.deepEqual(shortFormSizing(planLongForm({passages: await readPassagesJsonl(passages), maxNewTokens: 40}), "q"), {}, "long form keeps the default");
    });
});
