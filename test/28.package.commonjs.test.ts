// The package from a CommonJS project (issue 24, item 1): require("selfrag") and its subpaths
// return the ES module itself (require(esm), cjs/*.cjs), typed for TypeScript CommonJS projects
// (cjs/*.d.cts, typesVersions for moduleResolution node10), and the published file list holds
// them and the LICENSE (item 8). The consumer projects are throwaway folders whose
// node_modules/selfrag is this checkout, as `npm install <folder>` links it; nothing is mocked.
import assert from "node:assert/strict";
import {execFileSync, spawnSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {packageRoot} from "../lib/paths.js";
import {tempDir, tinyModel} from "../test-support/fixtures.js";

/** A throwaway project of `type` whose node_modules/selfrag is this checkout. */
function consumer(name: string, type: "commonjs" | "module"): string {
    const dir = fs.mkdtempSync(path.join(tempDir, `${name}-`));
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({name, private: true, type}));
    fs.mkdirSync(path.join(dir, "node_modules"));
    fs.symlinkSync(packageRoot, path.join(dir, "node_modules", "selfrag"), "dir");
    return dir;
}

function run(dir: string, file: string): {stdout: string, stderr: string, status: number | null} {
    const child = spawnSync(process.execPath, [file], {cwd: dir, encoding: "utf8", timeout: 120_000,
        env: {...process.env, SELFRAG_RUNTIME_CACHE: "0"}});
    return {stdout: child.stdout, stderr: child.stderr, status: child.status};
}

describe("the package from CommonJS", function () {
    this.timeout(300_000);
    let modelPath: string;
    before(async () => {
        modelPath = await tinyModel();
    });

    it("the published files hold the CommonJS entries, their types and the LICENSE", () => {
        const [packed] = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {cwd: packageRoot, encoding: "utf8",
            stdio: ["ignore", "pipe", "ignore"]})) as [{files: {path: string}[]}];
        const files = new Set(packed.files.map((f) => f.path));
        for (const file of ["LICENSE", "cjs/load.cjs", "cjs/index.cjs", "cjs/index.d.cts", "cjs/fixtures.cjs", "cjs/fixtures.d.cts",
            "cjs/distributed.cjs", "cjs/distributed.d.cts", "dist/lib/index.js", "dist/lib/index.d.ts"]) {
            assert.ok(files.has(file), `${file} is published`);
        }
        const license = fs.readFileSync(path.join(packageRoot, "LICENSE"), "utf8");
        assert.match(license, /^MIT License\n\nCopyright \(c\) 2026 the selfrag authors\n/);
        assert.equal(JSON.parse(fs.readFileSync(path.join(packageRoot, "package.json"), "utf8")).license, "MIT");
    });

    it("require(\"selfrag\") in a CommonJS project loads the fixture model and answers; the subpaths load; it is the ES module itself", () => {
        const dir = consumer("cjs-consumer", "commonjs");
        fs.writeFileSync(path.join(dir, "main.js"), `
            const {SelfRagModel, planShortForm, SelfRagError} = require("selfrag");
            const {writeFixtureModel} = require("selfrag/fixtures");
            const {runDistributedEvaluation, DEFAULT_QUEUE} = require("selfrag/distributed");
            (async () => {
                const esm = await import("selfrag");
                const model = await SelfRagModel.load({modelPath: ${JSON.stringify(modelPath)}, gpu: false});
                const result = await model.answer({question: "What is the capital of France?",
                    passages: [{title: "Paris", text: "Paris is the capital and largest city of France."}]}, planShortForm({ndocs: 1}));
                await model.dispose();
                console.log(JSON.stringify({answer: result.answer, sameModule: esm.SelfRagModel === SelfRagModel && esm.SelfRagError === SelfRagError,
                    fixtures: typeof writeFixtureModel, distributed: typeof runDistributedEvaluation, queue: typeof DEFAULT_QUEUE}));
            })().catch((e) => { console.error(e); process.exit(1); });`);
        const result = run(dir, "main.js");
        assert.equal(result.status, 0, result.stderr);
        assert.deepEqual(JSON.parse(result.stdout.trim()),
            {answer: "Paris.", sameModule: true, fixtures: "function", distributed: "function", queue: "string"});
    });

    for (const [module, resolution] of [["node16", "node16"], ["commonjs", "node10"]] as const) {
        it(`a TypeScript CommonJS project (module ${module}, moduleResolution ${resolution}) type-checks the imports and runs`, () => {
            const dir = consumer(`ts-cjs-${module}`, "commonjs");
            fs.writeFileSync(path.join(dir, "app.ts"), `
                import {SelfRagModel, SelfRagError, planShortForm, type ShortFormAnswer} from "selfrag";
                import {writeFixtureModel} from "selfrag/fixtures";
                import {DEFAULT_QUEUE} from "selfrag/distributed";

                async function main(): Promise<void> {
                    const model: SelfRagModel = await SelfRagModel.load({modelPath: ${JSON.stringify(modelPath)}, gpu: false});
                    const result: ShortFormAnswer = await model.answer({question: "What is the capital of France?",
                        passages: [{title: "Paris", text: "Paris is the capital and largest city of France."}]}, planShortForm({ndocs: 1}));
                    await model.dispose();
                    const error: SelfRagError = new SelfRagError("x", "INTERNAL");
                    console.log(JSON.stringify({answer: result.answer, fixtures: typeof writeFixtureModel, queue: DEFAULT_QUEUE.length > 0,
                        code: error.code}));
                }
                main().catch((e: unknown) => { console.error(e); process.exit(1); });`);
            // What \`tsc --init\` writes, CommonJS; the Node types from this checkout.
            fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({compilerOptions: {module, moduleResolution: resolution,
                target: "es2022", strict: true, esModuleInterop: true, skipLibCheck: true, outDir: "out",
                typeRoots: [path.join(packageRoot, "node_modules", "@types")], types: ["node"]}, files: ["app.ts"]}));
            const tsc = spawnSync(process.execPath, [path.join(packageRoot, "node_modules", "typescript", "bin", "tsc"), "-p", dir], {encoding: "utf8"});
            assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
            assert.match(fs.readFileSync(path.join(dir, "out", "app.js"), "utf8"), /require\("selfrag"\)/, "compiled to require()");
            const result = run(dir, path.join("out", "app.js"));
            assert.equal(result.status, 0, result.stderr);
            assert.deepEqual(JSON.parse(result.stdout.trim()), {answer: "Paris.", fixtures: "function", queue: true, code: "INTERNAL"});
        });
    }

    it("a type error in the CommonJS project is caught (the types are real, not any)", () => {
        const dir = consumer("ts-cjs-wrong", "commonjs");
        fs.writeFileSync(path.join(dir, "app.ts"), `import {planShortForm} from "selfrag";\nconst n: string = planShortForm({ndocs: 1}).ndocs;\nconsole.log(n);\n`);
        fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({compilerOptions: {module: "node16", moduleResolution: "node16",
            target: "es2022", strict: true, skipLibCheck: true, noEmit: true, typeRoots: [path.join(packageRoot, "node_modules", "@types")],
            types: ["node"]}, files: ["app.ts"]}));
        const tsc = spawnSync(process.execPath, [path.join(packageRoot, "node_modules", "typescript", "bin", "tsc"), "-p", dir], {encoding: "utf8"});
        assert.equal(tsc.status, 2, tsc.stdout);
        assert.match(tsc.stdout, /app\.ts\(2,7\): error TS2322: Type 'number' is not assignable to type 'string'/);
    });
});
