// The install's CUDA step: nvcc compiles native/cuda/*.cu into the cuda variant (sm_75..sm_90
// cubins plus PTX), nothing CUDA goes into the others, and the install still succeeds when nvcc
// is missing (hidden from PATH) or fails (a compiler that answers --version and cannot compile).
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {packageRoot} from "../../lib/paths.js";
import {readBuildManifest} from "../../test-support/cudaHost.js";
import {fatbinEntries} from "../../test-support/fatbin.js";

const ARCHS = [75, 80, 86, 89, 90];
const CUDA_SOURCES = 3; // device.cu, reflection_kernel.cu, segment_scorer.cu

function nvccOnPath(pathVariable = process.env.PATH ?? ""): boolean {
    return pathVariable.split(path.delimiter).some((dir) => dir !== "" && fs.existsSync(path.join(dir, "nvcc")));
}

/** A PATH directory holding every command of PATH except nvcc (symlinks; the first of a name wins). */
function pathWithoutNvcc(dir: string): string {
    fs.mkdirSync(dir, {recursive: true});
    for (const source of (process.env.PATH ?? "").split(path.delimiter)) {
        if (source === "" || !fs.existsSync(source)) continue;
        for (const name of fs.readdirSync(source)) {
            if (name === "nvcc" || fs.existsSync(path.join(dir, name))) continue;
            fs.symlinkSync(path.join(source, name), path.join(dir, name));
        }
    }
    return dir;
}

function buildInto(buildDir: string, env: NodeJS.ProcessEnv) {
    const result = spawnSync(process.execPath, [path.join(packageRoot, "scripts", "build-addon.mjs"), "--variants", "cpu,cuda"],
        {cwd: packageRoot, encoding: "utf8", env: {...env, SELFRAG_BUILD_DIR: buildDir, SELFRAG_CPU_BACKEND_BUILD: "0"}, timeout: 600_000});
    return {status: result.status, output: `${result.stdout}\n${result.stderr}`};
}

describe("CUDA kernels in the install (test:cuda-host)", function () {
    this.timeout(900_000);
    const manifest = readBuildManifest();
    const cuda = manifest.builds.find((b) => b.variant === "cuda" && b.addon.includes("cmake"));

    it("npm install compiled the .cu sources with nvcc into the cuda variant: cubins for sm_75..sm_90 and PTX", function () {
        if (cuda == null) this.skip(); // node-llama-cpp ships no CUDA binaries for this platform
        if (!nvccOnPath() && process.env.CUDACXX == null) {
            assert.equal(cuda!.cudaKernels?.built, false);
            assert.match(cuda!.cudaKernels!.reason!, /nvcc not found/);
            return;
        }
        assert.equal(cuda!.cudaKernels?.built, true, `the cuda variant was built without its kernels: ${JSON.stringify(cuda!.cudaKernels)}`);
        const entries = fatbinEntries(path.join(packageRoot, cuda!.addon));
        assert.ok(entries != null, "the cuda variant has a .nv_fatbin section");
        for (const arch of ARCHS) {
            assert.equal(entries.filter((e) => e.kind === "elf" && e.arch === arch).length, CUDA_SOURCES, `a cubin for sm_${arch} per source`);
        }
        assert.equal(entries.filter((e) => e.kind === "ptx" && e.arch === 90).length, CUDA_SOURCES, "PTX for compute_90 (later GPUs)");
        // The CUDA runtime is linked statically: nothing beyond node-llama-cpp's CUDA build is needed.
        const needed = spawnSync("readelf", ["-d", path.join(packageRoot, cuda!.addon)], {encoding: "utf8"});
        assert.equal(needed.status, 0, needed.stderr);
        assert.doesNotMatch(needed.stdout, /NEEDED.*libcudart/, "no shared libcudart dependency");
        const library = fs.readFileSync(path.join(packageRoot, cuda!.addon));
        for (const kernel of ["ExtractRowsKernel", "ScoreCandidatesKernel"]) assert.ok(library.includes(kernel), kernel);
        for (const other of manifest.builds.filter((b) => b.variant !== "cuda")) {
            assert.equal(fatbinEntries(path.join(packageRoot, other.addon)), undefined, `${other.variant} holds no GPU code`);
        }
    });

    it("a failing nvcc, then a missing one: the install still builds both variants, says why in one line, and they load", function () {
        if (cuda == null) this.skip();
        const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-cuda-build-"));
        try {
            const bin = pathWithoutNvcc(path.join(scratch, "bin"));
            assert.ok(!nvccOnPath(bin), "nvcc is hidden");
            // A compiler that answers like nvcc and cannot compile anything.
            const broken = path.join(scratch, "broken", "nvcc");
            fs.mkdirSync(path.dirname(broken));
            fs.writeFileSync(broken, "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --version ] && { echo 'Cuda compilation tools, release 13.0, V13.0.0'; exit 0; }; done\n" +
                "echo 'nvcc fatal: this nvcc cannot compile (test stand-in)' >&2\nexit 1\n", {mode: 0o755});
            const env: NodeJS.ProcessEnv = {...process.env, PATH: bin};
            delete env.CUDACXX;
            delete env.SELFRAG_CUDA_KERNELS;

            const failing = buildInto(path.join(scratch, "build"), {...env, CUDACXX: broken});
            assert.equal(failing.status, 0, failing.output.slice(-3000));
            assert.match(failing.output, /selfrag: CUDA kernels not built \(nvcc 13\.0 build failed: .*\): building without them/);
            const afterFailure = readBuildManifest(path.join(scratch, "build"));
            assert.equal(afterFailure.builds.find((b) => b.variant === "cuda")?.cudaKernels?.built, false);

            const missing = buildInto(path.join(scratch, "build"), env);
            assert.equal(missing.status, 0, missing.output.slice(-3000));
            assert.match(missing.output, /selfrag: CUDA kernels skipped \(nvcc not found\): the cuda variant reduces logits on the CPU/);
            const built = readBuildManifest(path.join(scratch, "build"));
            for (const variant of ["cpu", "cuda"]) {
                const b = built.builds.find((x) => x.variant === variant)!;
                assert.ok(fs.existsSync(path.join(packageRoot, b.addon)), `${variant} addon built`);
                assert.equal(fatbinEntries(path.join(packageRoot, b.addon)), undefined, `${variant}: no GPU code`);
            }
            assert.equal(built.builds.find((b) => b.variant === "cuda")?.cudaKernels?.reason, "nvcc not found");
            // The CPU addon built without nvcc works: a row through its kernel in a fresh process.
            const cpuAddon = path.join(packageRoot, built.builds.find((b) => b.variant === "cpu")!.addon);
            const probe = spawnSync(process.execPath, ["-e", `const a = require(${JSON.stringify(cpuAddon)});
                const out = {argmax: new Int32Array(1), argmaxLogprob: new Float32Array(1), logSumExp: new Float32Array(1), reflection: new Float32Array(1)};
                a.extractReflectionLogprobs(Float32Array.of(0, 3, 1), 1, 3, Int32Array.of(1), out, 1, "auto");
                console.log(JSON.stringify({argmax: out.argmax[0], cuda: a.cudaDevice()}));`], {encoding: "utf8"});
            assert.equal(probe.status, 0, probe.stderr);
            const result = JSON.parse(probe.stdout) as {argmax: number, cuda: {built: boolean, available: boolean, reason: string}};
            assert.equal(result.argmax, 1);
            assert.equal(result.cuda.built, false);
            assert.match(result.cuda.reason, /built without the CUDA kernels/);
        } finally {
            fs.rmSync(scratch, {recursive: true, force: true});
        }
    });
});
