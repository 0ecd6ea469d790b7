// The CUDA self-test without Node (native/cuda/selftest, scripts/cuda-selftest.sh): built here by
// CMake alone, its comparison of kernel outputs with the CPU kernel and scorer runs on the host
// replay of the device code (every case: 1 to 512 rows of 32,016 and 128,256 logits, NaN, +-Inf,
// -1e30 ...), and a fault injected into the kernel side's output is caught and named. With nvcc,
// the script builds the real kernels and, on a machine without a device, says so in its one line.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {packageRoot} from "../../lib/paths.js";

function nvccAvailable(): boolean {
    if (process.env.CUDACXX != null) return fs.existsSync(process.env.CUDACXX);
    return (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir !== "" && fs.existsSync(path.join(dir, "nvcc")));
}

function lines(text: string): string[] {
    return text.split("\n").filter((l) => l.trim() !== "");
}

describe("CUDA self-test without Node (scripts/cuda-selftest.sh, test:cuda-host)", function () {
    this.timeout(900_000);
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-cuda-selftest-"));
    const hostBuild = path.join(scratch, "host");
    const hostProgram = path.join(hostBuild, "selfrag_cuda_selftest_host");
    const run = (args: string[]) => spawnSync(hostProgram, args, {encoding: "utf8"});

    before(function () {
        const configure = spawnSync("cmake", ["-S", path.join(packageRoot, "native", "cuda", "selftest"), "-B", hostBuild,
            "-DCMAKE_BUILD_TYPE=Release", "-DSELFRAG_SELFTEST_DEVICE=OFF"], {encoding: "utf8"});
        assert.equal(configure.status, 0, configure.stdout + configure.stderr);
        const build = spawnSync("cmake", ["--build", hostBuild, "--target", "selfrag_cuda_selftest_host", "-j", "2"], {encoding: "utf8"});
        assert.equal(build.status, 0, build.stdout + build.stderr);
    });

    after(() => fs.rmSync(scratch, {recursive: true, force: true}));

    it("the host build compares every case (1 to 512 rows, vocabularies 32,016 and 128,256, adversarial rows, scoring) and passes in one line", () => {
        const result = run(["--backend", "host-replay"]);
        assert.equal(result.status, 0, result.stdout + result.stderr);
        const out = lines(result.stdout);
        assert.equal(out.length, 1, result.stdout);
        assert.match(out[0], /^cuda-selftest: PASS on the host replay of the device code: 60 extraction cases \(2,390 rows; vocabularies 32,016 and 128,256; 1 to 512 rows a launch/);
        assert.match(out[0], /7 scoring cases \(8,298 candidates\) agree with the CPU kernel \(scalar(, avx2)?(, avx512f)?\)/);
        const worst = Number(/worst log-prob difference ([0-9.e+-]+)/.exec(out[0])![1]);
        assert.ok(worst > 0 && worst <= 2e-5, `worst difference ${worst} (the vector CPU paths sum in float, so not 0)`);
        console.log(`      ${out[0]}`);
    });

    for (const [fault, named] of [["argmax", /argmax: \d+ vs CPU \d+/], ["logprob", /log-prob of id 32000: .* vs CPU/],
        ["status", /status: 1 vs CPU 0/], ["score", /candidate 0 score: .* vs CPU/]] as const) {
        it(`a wrong ${fault} on the kernel side fails the run (exit 1) and is named`, () => {
            const result = run(["--backend", "host-replay", "--quick", "--inject-fault", fault]);
            assert.equal(result.status, 1, result.stdout);
            const out = lines(result.stdout);
            assert.equal(out.length, 1, result.stdout);
            assert.match(out[0], /^cuda-selftest: FAIL on the host replay of the device code: \d+ of [\d,]+ comparisons differ from the CPU; first: case "/);
            assert.match(out[0], named);
        });
    }

    it("refuses unknown arguments (exit 2); asked for the device in a host build, says there is none (exit 0)", () => {
        const bad = run(["--backend", "gpu"]);
        assert.equal(bad.status, 2);
        assert.match(bad.stdout, /--backend must be auto, device or host-replay, got gpu/);
        const device = run(["--backend", "device"]);
        assert.equal(device.status, 0);
        assert.equal(device.stdout, "cuda-selftest: this build has no CUDA kernels (built by the host compiler): nothing compared\n");
    });

    it("scripts/cuda-selftest.sh builds the kernels with nvcc and CMake only and prints one line (here: no device, the host replay instead)", function () {
        if (!nvccAvailable()) this.skip(); // the script needs nvcc; the host build above covers the comparison
        const started = Date.now();
        const env: NodeJS.ProcessEnv = {PATH: process.env.PATH, HOME: process.env.HOME, SELFRAG_SELFTEST_BUILD: path.join(scratch, "device")};
        if (process.env.CUDACXX != null) env.CUDACXX = process.env.CUDACXX;
        const result = spawnSync(path.join(packageRoot, "scripts", "cuda-selftest.sh"), [], {encoding: "utf8", env});
        const seconds = (Date.now() - started) / 1000;
        assert.equal(result.status, 0, result.stdout + result.stderr + fs.readFileSync(path.join(scratch, "device.log"), "utf8").slice(-3000));
        const out = lines(result.stdout);
        assert.equal(out.length, 1, result.stdout);
        assert.match(out[0], /^cuda-selftest: kernels built for 75-real,80-real,86-real,89-real,90 in \d+ s; /);
        if (/no CUDA device/.test(out[0])) {
            assert.match(out[0], /; no CUDA device: .*; instead PASS on the host replay of the device code: 58 extraction cases/);
        } else {
            assert.match(out[0], /PASS on .* \(sm_\d+\): 60 extraction cases/);
        }
        console.log(`      ${seconds.toFixed(0)} s: ${out[0]}`);
    });
});
