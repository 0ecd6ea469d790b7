// Two installs of the package on one machine (two package roots, one SELFRAG_HOME), each with its
// own compiled CPU backend: processes alternate between them, and each runs on its own install's
// llama.cpp, ggml and addon files, the first process of each included. Each install is a real copy
// of this checkout (dist, build, node_modules, hard-linked to save disk and time) whose manifests
// name its own files, as `npm install` in that folder would have written them.
import assert from "node:assert/strict";
import {execFileSync, spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {compiledCpuBackend} from "../lib/engine/cpuBackend.js";
import {packageRoot} from "../lib/paths.js";
import {randomModel} from "../test-support/fixtures.js";

interface Report {
    cpuBackend?: {variant: string, build: string, file: string};
    via?: string;
    hasLlama?: boolean;
    libraries: string[];
    error?: {code: string, message: string};
}

/** Replaces a (possibly hard-linked) file with new content: the original install's copy stays as it was. */
function rewrite(file: string, edit: (text: string) => string): void {
    const text = edit(fs.readFileSync(file, "utf8"));
    fs.rmSync(file);
    fs.writeFileSync(file, text);
}

/** A copy of this checkout at `root` whose build manifests name its own files. */
function copyInstall(root: string): void {
    fs.mkdirSync(root, {recursive: true});
    for (const entry of ["package.json", "dist", "build", "node_modules"]) {
        execFileSync("cp", ["-al", path.join(packageRoot, entry), path.join(root, entry)]);
    }
    // npm install writes absolute paths into these two: the copy's own node-llama-cpp files.
    const own = (text: string) => text.split(JSON.stringify(packageRoot).slice(1, -1) + "/").join(root + "/");
    rewrite(path.join(root, "build", "variants.json"), own);
    rewrite(path.join(root, "build", "cpu-backend", "backend.json"), own);
}

describe("two installs on one machine", function () {
    this.timeout(600_000);
    const compiled = compiledCpuBackend();
    let base: string;
    let home: string;
    const installs: Record<"A" | "B", string> = {A: "", B: ""};

    before(function () {
        if (process.platform !== "linux" || compiled == null) this.skip();  // the compiled backend and /proc/self/maps are Linux x64's
        base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-installs-")));
        home = path.join(base, "home");
        installs.A = path.join(base, "a", "selfrag");
        installs.B = path.join(base, "b", "selfrag");
        copyInstall(installs.A);
        copyInstall(installs.B);
    });

    after(() => {
        if (base != null) fs.rmSync(base, {recursive: true, force: true});
    });

    /** Loads the random fixture in a fresh process of `install` (the CLI's load path unless nodeLlamaCpp). */
    async function run(install: "A" | "B", options: {nodeLlamaCpp?: boolean} = {}): Promise<Report> {
        const modelPath = await randomModel();
        const script = `
            import fs from "node:fs";
            const report = {};
            try {
                const {SelfRagModel} = await import(${JSON.stringify(path.join(installs[install], "dist", "lib", "index.js"))});
                const model = await SelfRagModel.load({modelPath: ${JSON.stringify(modelPath)}, contextSize: 256, sequences: 1, threads: 1,
                    gpu: false, nodeLlamaCpp: ${options.nodeLlamaCpp ?? false}});
                report.cpuBackend = model.cpuBackend;
                ${options.nodeLlamaCpp ? "report.hasLlama = model.llama != null;" : ""}
                await model.dispose();
            } catch (error) {
                report.error = {code: error.code, message: error.message};
            }
            report.libraries = [...new Set(fs.readFileSync("/proc/self/maps", "utf8").split("\\n").map((l) => l.slice(l.indexOf("/")))
                .filter((f) => /\\/(lib(llama|ggml)[^/]*\\.so[^/]*|llama-addon\\.node|selfrag\\.node)$/.test(f)))];
            console.log(JSON.stringify(report));`;
        // A script file, not -e: node-llama-cpp tests its binary in a child that inherits execArgv.
        const file = path.join(base, `child-${install}.mjs`);
        fs.writeFileSync(file, script);
        const result = spawnSync(process.execPath, [file], {
            cwd: base, encoding: "utf8", timeout: 120_000,
            env: {...process.env, SELFRAG_HOME: home, SELFRAG_TIMINGS: "1", SELFRAG_LOG_LEVEL: "disabled", SELFRAG_RUNTIME_CACHE: "",
                SELFRAG_CPU_BACKEND: "", SELFRAG_CPU_BACKEND_DIR: "", SELFRAG_ADDON: ""}
        });
        assert.equal(result.status, 0, `${install}: exit ${result.status}: ${result.stderr}`);
        const report = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as Report;
        report.via = /^selfrag-timing backend [\d.]+ (\S+)$/m.exec(result.stderr)?.[1];
        return report;
    }

    function assertOwn(install: "A" | "B", report: Report, label: string): void {
        const root = installs[install] + path.sep;
        assert.equal(report.error, undefined, `${label}: ${report.error?.message}`);
        assert.equal(report.cpuBackend?.build, "compiled", `${label} runs on the compiled CPU backend: ${JSON.stringify(report.cpuBackend)}`);
        assert.equal(report.cpuBackend?.file, path.join(installs[install], "build", "cpu-backend", path.basename(report.cpuBackend!.file)),
            `${label}: its own compiled backend`);
        for (const kind of [/\/libllama[^/]*\.so$/, /\/libggml-base\.so$/, /\/llama-addon\.node$/, /\/selfrag\.node$/]) {
            assert.ok(report.libraries.some((f) => kind.test(f)), `${label} maps ${kind}: ${report.libraries.join(", ")}`);
        }
        const foreign = report.libraries.filter((f) => !f.startsWith(root));
        assert.deepEqual(foreign, [], `${label}: every llama.cpp, ggml and addon library under ${root}`);
    }

    it("alternating processes (A, B, A, B, then with node-llama-cpp's Llama) each run on their own install's compiled backend and binaries", async () => {
        const sequence: ["A" | "B", boolean][] = [["A", false], ["B", false], ["A", false], ["B", false], ["A", true], ["B", true], ["A", false]];
        const vias: string[] = [];
        for (const [i, [install, nodeLlamaCpp]] of sequence.entries()) {
            const report = await run(install, {nodeLlamaCpp});
            const label = `process ${i + 1} (${install}${nodeLlamaCpp ? ", nodeLlamaCpp" : ""})`;
            assertOwn(install, report, label);
            if (nodeLlamaCpp) assert.equal(report.hasLlama, true, label);
            vias.push(`${install}:${report.via}`);
        }
        // The engine-only load never needs getLlama(): not in a first process, not after the other install ran.
        assert.deepEqual(vias, ["A:direct", "B:direct", "A:direct", "B:direct", "A:node-llama-cpp", "B:node-llama-cpp", "A:direct"]);
        // One record per install, each naming its own binding.
        const records = fs.readdirSync(path.join(home, "runtime")).filter((f) => /^llama-false-[0-9a-f]{16}\.json$/.test(f));
        assert.equal(records.length, 2, records.join(", "));
        const named = records.map((f) => JSON.parse(fs.readFileSync(path.join(home, "runtime", f), "utf8")) as
            {packageRoot: string, bindingPath: string});
        assert.deepEqual(named.map((r) => r.packageRoot).sort(), [installs.A, installs.B]);
        for (const record of named) assert.ok(record.bindingPath.startsWith(record.packageRoot + path.sep), JSON.stringify(record));
    });

    it("a record naming another install's binding is never used: the process still runs on its own files", async () => {
        const dir = path.join(home, "runtime");
        const records = fs.readdirSync(dir).filter((f) => /^llama-false-[0-9a-f]{16}\.json$/.test(f))
            .map((f) => ({file: path.join(dir, f), record: JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as Record<string, string>}));
        const ofA = records.find((r) => r.record.packageRoot === installs.A)!;
        const ofB = records.find((r) => r.record.packageRoot === installs.B)!;
        // B's record file, saying B, but naming A's binding (with A's fingerprint): what a shared record used to do.
        fs.writeFileSync(ofB.file, JSON.stringify({...ofA.record, packageRoot: installs.B}));
        assertOwn("B", await run("B"), "B with a record naming A's binding");
        // ... and A's record file copied whole over B's: names another install.
        fs.writeFileSync(ofB.file, JSON.stringify(ofA.record));
        assertOwn("B", await run("B"), "B with A's record");
        assertOwn("A", await run("A"), "A after");
    });
});
