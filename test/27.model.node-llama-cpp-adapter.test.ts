// The node-llama-cpp adapter (lib/engine/nodeLlamaCpp.ts): what selfrag relies on beyond
// node-llama-cpp's public API, checked without a GPU, so that an upgrade of node-llama-cpp fails
// here, next to the file to re-read, rather than somewhere in start-up.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type {LlamaLogLevel} from "node-llama-cpp";
import {bindingPassesTest, cpuBindingGetLlamaWouldLoad, DOWNGRADED, forkableExecArgv, inThisInstall, installNodeModules, lineLogger, nodeLlamaCppDir,
    NODE_LLAMA_CPP_VERSION, requireBinding} from "../lib/engine/nodeLlamaCpp.js";
import {cpuBackendVariant, isGgmlBackend, isLlamaBinding, isLlamaStackLibrary, llamaLibrarySoname, mappedFiles} from "../lib/engine/processMaps.js";
import {packageRoot} from "../lib/paths.js";
import {tinyModel} from "../test-support/fixtures.js";

describe("node-llama-cpp adapter", function () {
    this.timeout(120_000);

    it("was written for the node-llama-cpp installed (package.json pins the same version)", () => {
        const installed = JSON.parse(fs.readFileSync(path.join(nodeLlamaCppDir(), "package.json"), "utf8")) as {version: string};
        const pinned = (JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")) as {dependencies: Record<string, string>})
            .dependencies["node-llama-cpp"];
        assert.equal(installed.version, NODE_LLAMA_CPP_VERSION, "re-read lib/engine/nodeLlamaCpp.ts against the new release");
        assert.equal(pinned, NODE_LLAMA_CPP_VERSION);
    });

    it("foretells the CPU binary getLlama() loads (this install's), which passes node-llama-cpp's own test and has the binding's exports", async function () {
        if (process.platform !== "linux") this.skip();  // foretold on Linux only (elsewhere getLlama() decides)
        const predicted = await cpuBindingGetLlamaWouldLoad(false);
        assert.ok(predicted != null, "no local build here: the prebuilt CPU binary is the one candidate");
        assert.ok(inThisInstall(predicted), `${predicted} under ${installNodeModules()}`);
        assert.equal(await bindingPassesTest(predicted), true);
        // What getLlama() actually maps, in a process of its own (one llama.cpp per process).
        const script = `
            import fs from "node:fs";
            const {getLlamaFor} = await import(${JSON.stringify(path.join(packageRoot, "dist", "lib", "engine", "nodeLlamaCpp.js"))});
            await getLlamaFor(false, () => {});
            const maps = fs.readFileSync("/proc/self/maps", "utf8").split("\\n").map((l) => l.slice(l.indexOf("/")));
            console.log(JSON.stringify([...new Set(maps.filter((f) => f.endsWith("/llama-addon.node")))]));`;
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-adapter-"));
        try {
            fs.writeFileSync(path.join(dir, "child.mjs"), script);
            const run = spawnSync(process.execPath, [path.join(dir, "child.mjs")], {encoding: "utf8", timeout: 60_000});
            assert.equal(run.status, 0, run.stderr);
            assert.deepEqual(JSON.parse(run.stdout.trim().split("\n").at(-1)!), [predicted]);
        } finally {
            fs.rmSync(dir, {recursive: true, force: true});
        }
        const binding = requireBinding(predicted) as unknown as Record<string, unknown>;
        for (const name of ["markLoaded", "setLogger", "setLoggerLogLevel", "loadBackends", "getGpuType", "ensureGpuDeviceIsSupported",
            "getMathCores", "init"]) {
            assert.equal(typeof binding[name], "function", `the binding exports ${name}`);
        }
    });

    it("a file outside this install's node_modules is not this install's", () => {
        assert.equal(inThisInstall(path.join(os.tmpdir(), "llama-addon.node")), false);
        assert.equal(inThisInstall(path.join(installNodeModules(), "..", "gone", "llama-addon.node")), false);
    });

    describe("lineLogger", () => {
        const collect = () => {
            const lines: [LlamaLogLevel, string][] = [];
            return {lines, log: lineLogger((level, message) => lines.push([level, message]))};
        };

        it("joins pieces into lines: text after a newline waits for the next piece, or for the end of the tick", async () => {
            const {lines, log} = collect();
            log(3, "first\nllama_model_load: ");
            log(3, "a warning\nsecond");
            assert.deepEqual(lines, [["warn", "first"], ["warn", "llama_model_load: a warning"]]);
            await Promise.resolve();
            assert.deepEqual(lines, [["warn", "first"], ["warn", "llama_model_load: a warning"], ["warn", "second"]]);
        });

        it("a change of level ends the pending line; info and chattier levels never reach the sink", async () => {
            const {lines, log} = collect();
            log(2, "half an error");
            log(3, "a warning\n");
            log(4, "some info\n");
            log(6, "debug\n");
            log(1, "fatal\n");
            await Promise.resolve();
            assert.deepEqual(lines, [["error", "half an error"], ["warn", "a warning"], ["fatal", "fatal"]]);
        });

        it("downgrades the warnings node-llama-cpp reports as info (its getTransformedLogLevel list), and only those", async () => {
            const {lines, log} = collect();
            for (const [prefix, suffix] of DOWNGRADED) log(3, `${prefix}${prefix === "" || suffix !== "" ? "x" : ""}${suffix}\n`);
            assert.deepEqual(lines, []);
            log(3, "make_cpu_buft_list: something else\n");
            log(3, "llama_model_loader: direct I/O is enabled, disabling mmap\n");
            assert.deepEqual(lines, [["warn", "make_cpu_buft_list: something else"]]);
        });
    });

    describe("processMaps", () => {
        it("lists this process's mapped files once each, Node among them", function () {
            if (process.platform !== "linux") this.skip();  // /proc/self/maps is Linux's
            const files = mappedFiles();
            assert.equal(new Set(files).size, files.length);
            assert.ok(files.includes(fs.realpathSync(process.execPath)), "node itself is mapped");
        });

        it("names llama.cpp's files by their patterns", () => {
            const bins = "/x/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
            assert.equal(isLlamaBinding(`${bins}/llama-addon.node`), true);
            assert.equal(isLlamaBinding("/x/build/selfrag.node"), false);
            assert.equal(llamaLibrarySoname(`${bins}/libllama.v0.5.0.so`), "libllama.v0.5.0.so");
            assert.equal(llamaLibrarySoname(`${bins}/libllama.cuda.v0.5.0.so`), "libllama.cuda.v0.5.0.so");
            assert.equal(llamaLibrarySoname(`${bins}/libllama-common.so`), undefined);
            assert.equal(cpuBackendVariant(`${bins}/libggml-cpu-zen4.so`), "zen4");
            assert.equal(cpuBackendVariant(`${bins}/libggml-cpu-armv8.2_1.so`), "armv8.2_1");
            assert.equal(cpuBackendVariant(`${bins}/libggml-cpu.so`), "cpu");
            assert.equal(cpuBackendVariant(`${bins}/libggml-cuda.so`), undefined);
            assert.equal(isGgmlBackend(`${bins}/libggml-cuda.so`), true);
            assert.equal(isGgmlBackend(`${bins}/libggml-base.so`), false);
            for (const f of ["libggml-base.so", "libggml.v0.5.0.so", "libllama-common.so", "llama-addon.node", "selfrag.node"]) {
                assert.equal(isLlamaStackLibrary(`${bins}/${f}`), true, f);
            }
            assert.equal(isLlamaStackLibrary("/usr/lib/x86_64-linux-gnu/libc.so.6"), false);
        });
    });

    // Issue 24, item 9: node-llama-cpp tests its binary in a child process forked with this
    // process's execArgv; with `-e CODE` that child ran CODE instead of the test file, and the
    // default load failed with ADDON_LOAD_FAILED / NoBinaryFoundError.
    it("the binary test's child process gets this process's flags without the code of -e / -p / --input-type", () => {
        assert.deepEqual(forkableExecArgv(["--input-type=module", "-e", "import x from 'y'", "--max-old-space-size=512"]), ["--max-old-space-size=512"]);
        assert.deepEqual(forkableExecArgv(["--input-type", "module", "--eval", "code", "--import", "./hook.mjs"]), ["--import", "./hook.mjs"]);
        assert.deepEqual(forkableExecArgv(["-p", "1 + 1"]), []);
        assert.deepEqual(forkableExecArgv(["--print=1", "--eval=2", "-i", "--no-warnings"]), ["--no-warnings"]);
        assert.deepEqual(forkableExecArgv(["--enable-source-maps"]), ["--enable-source-maps"]);
    });

    it("the default load (getLlama(), its binary tested in a child process) works in `node --input-type=module -e`", async function () {
        const modelPath = await tinyModel();
        const code = `
            import {SelfRagModel} from ${JSON.stringify(path.join(packageRoot, "dist", "lib", "index.js"))};
            const model = await SelfRagModel.load({modelPath: ${JSON.stringify(modelPath)}, gpu: false});
            const result = await model.answer({question: "What is the capital of France?",
                passages: [{title: "Paris", text: "Paris is the capital and largest city of France."}]});
            console.log(JSON.stringify({answer: result.answer, argv: process.execArgv.length}));
            await model.dispose();`;
        // SELFRAG_RUNTIME_CACHE=0: no start-up record, so the load goes through getLlama() and its binary test.
        const child = spawnSync(process.execPath, ["--input-type=module", "-e", code], {cwd: os.tmpdir(), encoding: "utf8",
            env: {...process.env, SELFRAG_RUNTIME_CACHE: "0"}, timeout: 120_000});
        assert.equal(child.status, 0, child.stderr);
        assert.doesNotMatch(child.stderr, /failed to run a test process|NoBinaryFoundError/);
        // The answer, and the caller's execArgv as it was (the adapter restored it).
        assert.deepEqual(JSON.parse(child.stdout.trim()), {answer: "Paris.", argv: 3});
    });
});
