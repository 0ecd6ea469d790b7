// The CPU backend compiled at install (scripts/build-cpu-backend.mjs): `npm install` builds the
// ggml CPU variant this machine would get from node-llama-cpp's prebuilt set, linked to the
// libggml-base.so node-llama-cpp loads, and the engine runs on it. Each case runs in a child
// process, since one process loads one CPU backend. Oracles: ggml's own variant choice among the
// prebuilt binaries (SELFRAG_CPU_BACKEND=prebuilt), and the prebuilt backend's answers.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {packageRoot} from "../lib/paths.js";
import {randomModel} from "../test-support/fixtures.js";

const compiledDir = path.join(packageRoot, "build", "cpu-backend");
const buildManifest = JSON.parse(fs.readFileSync(path.join(packageRoot, "build", "variants.json"), "utf8")) as
    {cpuBackend?: {built: boolean, variant?: string, reason?: string}};
const compiles = process.platform === "linux" && process.arch === "x64" && spawnSync("cmake", ["--version"]).status === 0 &&
    process.env.SELFRAG_CPU_BACKEND_BUILD !== "0";

interface ChildReport {
    cpuBackend?: {variant: string, build: string, file: string};
    bases: string[];
    hasLlama?: boolean;
    answer?: {answer: string, candidates: {text: string, tokens: number, score: number}[]};
    error?: {code: string, message: string};
}

/** Loads the random fixture in a fresh process and reports the backend, the mapped ggml bases and an answer. */
function child(env: Record<string, string>, options: {nodeLlamaCpp?: boolean, answer?: boolean} = {}): Promise<ChildReport> {
    return randomModel().then((modelPath) => {
        const script = `
            import fs from "node:fs";
            import {SelfRagModel} from ${JSON.stringify(path.join(packageRoot, "dist", "lib", "SelfRagModel.js"))};
            const report = {};
            try {
                const model = await SelfRagModel.load({modelPath: ${JSON.stringify(modelPath)}, contextSize: 512, sequences: 4, threads: 1,
                    gpu: false, nodeLlamaCpp: ${options.nodeLlamaCpp ?? false}});
                report.cpuBackend = model.cpuBackend;
                ${options.nodeLlamaCpp ? "report.hasLlama = model.llama != null;" : ""}
                ${options.answer ? `const a = await model.answer({question: "What is the capital of France?", passages: [
                    {title: "Paris", text: "Paris is the capital and largest city of France."},
                    {title: "Rome", text: "Rome is the capital city of Italy."},
                    {title: "Vienna", text: "Vienna is the capital of Austria."}]}, {mode: "always", ndocs: 3, maxNewTokens: 24});
                report.answer = {answer: a.answer, candidates: a.candidates.map((c) => ({text: c.text, tokens: c.tokens, score: c.score}))};` : ""}
                await model.dispose();
            } catch (error) {
                report.error = {code: error.code, message: error.message};
            }
            report.bases = [...new Set(fs.readFileSync("/proc/self/maps", "utf8").split("\\n")
                .map((line) => /\\s(\\/\\S*\\/libggml-base[^/\\s]*\\.so[^/\\s]*)$/.exec(line)?.[1]).filter((f) => f != null))];
            console.log(JSON.stringify(report));`;
        // A script file, not `-e`: node-llama-cpp tests its binary in a child that inherits execArgv.
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-cpu-child-")), "child.mjs");
        fs.writeFileSync(file, script);
        const result = spawnSync(process.execPath, [file], {
            encoding: "utf8", env: {...process.env, SELFRAG_LOG_LEVEL: "disabled", SELFRAG_HOME: home, ...env}, timeout: 120_000});
        fs.rmSync(path.dirname(file), {recursive: true, force: true});
        assert.equal(result.status, 0, `child exited with ${result.status}: ${result.stderr}`);
        return JSON.parse(result.stdout.trim().split("\n").at(-1)!) as ChildReport;
    });
}

// Its own runtime record: a record written by another checkout sharing ~/.cache names another
// binary, and the first process then (rightly) runs on the prebuilt backend.
const home = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-cpu-home-"));

describe("CPU backend compiled at install", function () {
    this.timeout(300_000);

    before(async () => {
        // The first process on a machine goes through getLlama() and records the runtime.
        const first = await child({});
        assert.equal(first.error, undefined, first.error?.message);
    });

    after(() => fs.rmSync(home, {recursive: true, force: true}));

    it("npm install recorded what became of the compiled CPU backend", function () {
        assert.ok(buildManifest.cpuBackend != null, "build/variants.json has a cpuBackend entry");
        if (compiles) {
            assert.equal(buildManifest.cpuBackend.built, true, `built on linux-x64 with cmake: ${buildManifest.cpuBackend.reason}`);
            const manifest = JSON.parse(fs.readFileSync(path.join(compiledDir, "backend.json"), "utf8")) as {variant: string, file: string};
            assert.equal(manifest.variant, buildManifest.cpuBackend.variant);
            assert.ok(fs.existsSync(path.join(compiledDir, manifest.file)));
        } else {
            assert.equal(buildManifest.cpuBackend.built, false);
            assert.match(buildManifest.cpuBackend.reason ?? "", /\S/);
        }
    });

    it("runs on the variant ggml's own score picks among the prebuilt binaries, linked to node-llama-cpp's one libggml-base", async function () {
        const prebuilt = await child({SELFRAG_CPU_BACKEND: "prebuilt"});
        const compiled = await child({});
        assert.equal(prebuilt.error, undefined, prebuilt.error?.message);
        assert.equal(compiled.error, undefined, compiled.error?.message);
        assert.equal(prebuilt.cpuBackend?.build, "prebuilt");
        if (!compiles) {
            assert.equal(compiled.cpuBackend?.build, "prebuilt");
            return;
        }
        assert.equal(compiled.cpuBackend?.build, "compiled");
        assert.equal(compiled.cpuBackend?.file, path.join(compiledDir, path.basename(compiled.cpuBackend!.file)));
        assert.equal(compiled.cpuBackend?.variant, prebuilt.cpuBackend?.variant, "the same variant as ggml's scan of the prebuilt set");
        // One ggml base library, node-llama-cpp's, in both processes: the compiled module did not bring its own.
        assert.deepEqual(compiled.bases, prebuilt.bases);
        assert.equal(compiled.bases.length, 1);
        assert.ok(!compiled.bases[0].startsWith(path.join(packageRoot, "build")), compiled.bases[0]);
    });

    it("answers as the prebuilt backend does (tokens equal, scores within 1e-4)", async function () {
        const prebuilt = await child({SELFRAG_CPU_BACKEND: "prebuilt"}, {answer: true});
        const compiled = await child({}, {answer: true});
        assert.equal(compiled.cpuBackend?.build, compiles ? "compiled" : "prebuilt");
        assert.equal(compiled.answer!.answer, prebuilt.answer!.answer);
        assert.equal(compiled.answer!.candidates.length, 3);
        compiled.answer!.candidates.forEach((c, i) => {
            const p = prebuilt.answer!.candidates[i];
            assert.equal(c.text, p.text, `candidate ${i} text`);
            assert.equal(c.tokens, p.tokens, `candidate ${i} tokens`);
            assert.ok(Math.abs(c.score - p.score) <= 1e-4, `candidate ${i} score ${c.score} vs ${p.score}`);
        });
    });

    it("the library's default load (with node-llama-cpp's Llama) also runs on the compiled backend", async function () {
        const report = await child({}, {nodeLlamaCpp: true});
        assert.equal(report.error, undefined, report.error?.message);
        assert.equal(report.hasLlama, true);
        assert.equal(report.cpuBackend?.build, compiles ? "compiled" : "prebuilt");
        assert.equal(report.bases.length, 1);
    });

    it("a build made for another libggml-base, or a damaged module, is never loaded: the prebuilt backend answers", async function () {
        if (!compiles) this.skip();  // nothing compiled here to damage; the prebuilt path is the one tested above
        const manifest = JSON.parse(fs.readFileSync(path.join(compiledDir, "backend.json"), "utf8")) as {file: string, base: {size: number}};
        const stale = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-cpu-stale-"));
        const damaged = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-cpu-damaged-"));
        try {
            fs.copyFileSync(path.join(compiledDir, manifest.file), path.join(stale, manifest.file));
            fs.writeFileSync(path.join(stale, "backend.json"), JSON.stringify({...manifest, base: {...manifest.base, size: manifest.base.size + 1}}));
            fs.writeFileSync(path.join(damaged, "backend.json"), JSON.stringify(manifest));
            fs.writeFileSync(path.join(damaged, manifest.file), fs.readFileSync(path.join(compiledDir, manifest.file)).subarray(0, 4096));
            for (const dir of [stale, damaged]) {
                const report = await child({SELFRAG_CPU_BACKEND_DIR: dir}, {answer: true});
                assert.equal(report.error, undefined, `${dir}: ${report.error?.message}`);
                assert.equal(report.cpuBackend?.build, "prebuilt", dir);
                assert.equal(report.answer?.candidates.length, 3);
            }
        } finally {
            fs.rmSync(stale, {recursive: true, force: true});
            fs.rmSync(damaged, {recursive: true, force: true});
        }
    });

    it("the install picks ggml's best-scoring x86 variant from llama.cpp's own list for a CPU's flags", async function () {
        const script = path.join(packageRoot, "scripts", "build-cpu-backend.mjs");
        const {bestVariant, x86Variants} = await import(script) as {
            x86Variants(dir: string): {name: string, features: string[]}[],
            bestVariant(variants: {name: string, features: string[]}[], flags: Set<string>): {name: string} | undefined};
        const {llamaCppSourceDir} = await import("../lib/paths.js");
        const variants = x86Variants(llamaCppSourceDir());
        assert.ok(variants.some((v) => v.name === "haswell") && variants.some((v) => v.name === "x64"), variants.map((v) => v.name).join(", "));
        const base = ["sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"];
        const avx512 = ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"];
        const pick = (flags: string[]) => bestVariant(variants, new Set(flags))?.name;
        assert.equal(pick([]), "x64");
        assert.equal(pick(["sse4_2"]), "sse42");
        assert.equal(pick(base), "haswell");
        assert.equal(pick([...base, "avx_vnni"]), "alderlake");
        assert.equal(pick([...base, ...avx512]), "skylakex");
        assert.equal(pick([...base, ...avx512.slice(1)]), "haswell", "AVX-512 needs all five of F, CD, VL, DQ, BW");
        assert.equal(pick([...base, ...avx512, "avx512vbmi", "avx512_vnni", "avx512_bf16"]), "zen4");
        assert.equal(pick([...base, ...avx512, "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"]), "sapphirerapids");
    });

    it("SELFRAG_CPU_BACKEND other than auto or prebuilt is refused with a message naming it", async function () {
        const report = await child({SELFRAG_CPU_BACKEND: "fastest"});
        assert.equal(report.error?.code, "INVALID_ARGUMENT");
        assert.match(report.error?.message ?? "", /SELFRAG_CPU_BACKEND must be "auto" or "prebuilt", got "fastest"/);
    });
});
