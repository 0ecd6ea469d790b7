// Builds llama.cpp's `llama-server` from the exact llama.cpp release node-llama-cpp ships (the same
// kernels our addon links), so the serving benchmark compares engines, not llama.cpp versions.
// The build is CPU only, static, and lives in bench/.cache (git-ignored): binaries are never committed.
//   node dist/bench/peer/buildLlamaServer.js      builds if needed and prints the binary path
//   node dist/bench/peer/buildLlamaServer.js llama-bench    llama-bench like the compiled CPU backend
//   node dist/bench/peer/buildLlamaServer.js llama-server-variant    llama-server like the compiled CPU backend
import {spawn, spawnSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {benchCacheDir, repoRoot} from "./repoRoot.js";

/** Out-of-source CMake build directory; the binary ends up in its bin/ (CMAKE_RUNTIME_OUTPUT_DIRECTORY). */
export function llamaServerBuildDir(): string {
    return path.join(benchCacheDir(), "llama-server-build");
}

export function llamaServerBinaryPath(): string {
    return path.join(llamaServerBuildDir(), "bin", process.platform === "win32" ? "llama-server.exe" : "llama-server");
}

/** node-llama-cpp's llama.cpp checkout (filled by `source download` from the git bundle it ships, offline). */
export function llamaCppSourceDir(): string {
    return path.join(repoRoot(), "node_modules", "node-llama-cpp", "llama", "llama.cpp");
}

/**
 * CMake cache options. Why each one:
 * - CPU only, static libs: one self-contained binary, no rpath to the build tree, no GPU SDKs probed.
 * - LLAMA_BUILD_UI=OFF and LLAMA_USE_PREBUILT_UI=OFF: in this llama.cpp (tools/ui + scripts/ui-assets.cmake)
 *   the `llama-ui-assets` step otherwise runs `npm ci && npm run build` (BUILD_UI) or downloads
 *   dist.tar.gz from a Hugging Face bucket (USE_PREBUILT_UI, default ON); with both off it embeds an
 *   empty asset table and the server simply has no web UI. The machine has no network for either.
 * - LLAMA_CURL=OFF is deprecated (ignored with a warning) in this version but harmless and keeps
 *   older releases from linking libcurl; LLAMA_OPENSSL=OFF: we serve plain HTTP on loopback only.
 * - tests/examples/app off: only `--target llama-server` is built anyway, this just trims configure.
 */
export const LLAMA_SERVER_CMAKE_OPTIONS: readonly string[] = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_CUDA=OFF",
    "-DGGML_VULKAN=OFF",
    "-DGGML_METAL=OFF",
    "-DGGML_BLAS=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
];

/** Two cores on the benchmark machine; override with SELFRAG_PEER_BUILD_JOBS. */
const BUILD_JOBS = process.env.SELFRAG_PEER_BUILD_JOBS ?? "2";

function ensureSource(): string {
    const source = llamaCppSourceDir();
    if (fs.existsSync(path.join(source, "tools", "server", "CMakeLists.txt"))) return source;
    // node-llama-cpp extracts the source from its bundled git bundle: offline, a few seconds.
    const result = spawnSync("npx", ["--no", "node-llama-cpp", "source", "download", "--skipBuild", "--noUsageExample"],
        {cwd: repoRoot(), stdio: "inherit"});
    if (result.status !== 0 || !fs.existsSync(path.join(source, "tools", "server", "CMakeLists.txt"))) {
        throw new Error(`llama.cpp source not found at ${source} and \`node-llama-cpp source download\` failed ` +
            `(status ${result.status}): run \`npm install\` in ${repoRoot()}`);
    }
    return source;
}

/** Runs a command with its output appended to the build log; rejects with the log's tail on failure. */
function runLogged(command: string, args: string[], logFile: string): Promise<void> {
    return new Promise((resolve, reject) => {
        const log = fs.openSync(logFile, "a");
        fs.writeSync(log, `\n$ ${command} ${args.join(" ")}\n`);
        const child = spawn(command, args, {stdio: ["ignore", log, log]});
        child.on("error", (error) => {
            fs.closeSync(log);
            reject(error);
        });
        child.on("exit", (code, signal) => {
            fs.closeSync(log);
            if (code === 0) return resolve();
            const tail = fs.readFileSync(logFile, "utf8").split("\n").slice(-40).join("\n");
            reject(new Error(`${command} ${args[0]} failed (${signal ?? `exit ${code}`}); see ${logFile}:\n${tail}`));
        });
    });
}

async function build(): Promise<string> {
    const source = ensureSource();
    const buildDir = llamaServerBuildDir();
    fs.mkdirSync(buildDir, {recursive: true});
    const logFile = path.join(buildDir, "build.log");
    // Out-of-source build: CMake writes only under buildDir, node_modules stays untouched, and an
    // interrupted build resumes incrementally on the next call.
    const started = Date.now();
    process.stderr.write(`selfrag bench: building llama-server from ${source} into ${buildDir} (log: ${logFile}) ...\n`);
    await runLogged("cmake", ["-S", source, "-B", buildDir, ...LLAMA_SERVER_CMAKE_OPTIONS], logFile);
    await runLogged("cmake", ["--build", buildDir, "--config", "Release", "--target", "llama-server", "-j", BUILD_JOBS], logFile);
    const binary = llamaServerBinaryPath();
    if (!fs.existsSync(binary)) throw new Error(`build finished but ${binary} is missing; see ${logFile}`);
    process.stderr.write(`selfrag bench: llama-server built in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    return binary;
}

let pending: Promise<string> | undefined;

/** Path of a built llama-server binary, building it (10+ minutes on 2 cores) the first time. */
export async function ensureLlamaServer(): Promise<string> {
    const binary = llamaServerBinaryPath();
    if (fs.existsSync(binary)) return binary;
    // One build per process even when several benchmarks ask at once.
    pending ??= build().finally(() => {
        pending = undefined;
    });
    return pending;
}

// --- llama-bench, like for like with the engine's compiled CPU backend -------------------------------
// The engine runs llama.cpp's CPU kernels from the module scripts/build-cpu-backend.mjs compiled at
// install: one ggml CPU variant (ggml's own pick for this CPU, e.g. zen4) in ggml's variant mode, i.e.
// GGML_NATIVE=OFF and the variant's features as explicit flags (-mavx512f ... from ggml-cpu's
// CMakeLists.txt, not -march=native), no OpenMP, the system c++. llama-bench is built here with the
// same compiler, GGML_NATIVE=OFF, GGML_OPENMP=OFF, GGML_BACKEND_DL, and exactly that variant's feature
// options switched on (every other x86 feature off): ggml-cpu's CMakeLists.txt turns them into the
// same -m flags and GGML_<feature> definitions as the variant build, so both sides run the same
// kernels compiled the same way. Not GGML_CPU_ALL_VARIANTS itself: with it, the `ggml` target depends
// on all 13 x86 variants and building llama-bench would compile every one (most of an hour on 2 cores).
// Not GGML_NATIVE: -march=native enables whatever this CPU has beyond the variant (and tunes for it).

export function llamaBenchBuildDir(variant: string): string {
    return path.join(benchCacheDir(), `llama-bench-${variant}-build`);
}

export function llamaBenchBinaryPath(variant: string): string {
    return path.join(llamaBenchBuildDir(variant), "bin", "llama-bench");
}

/** The CPU variant the engine's compiled backend was built for (build/cpu-backend/backend.json). */
export function compiledCpuVariant(): {variant: string, features: string[], compiler: string} {
    const manifest = path.join(repoRoot(), "build", "cpu-backend", "backend.json");
    if (!fs.existsSync(manifest)) {
        throw new Error(`${manifest} is missing: no compiled CPU backend (run \`node scripts/build-addon.mjs\`), nothing to match llama-bench to`);
    }
    const json = JSON.parse(fs.readFileSync(manifest, "utf8")) as {variant: string, features: string[], compiler: string};
    return {variant: json.variant, features: json.features, compiler: json.compiler};
}

/** ggml's x86 feature options (ggml/CMakeLists.txt); the variant's are switched on, the rest off. */
const X86_FEATURE_OPTIONS = ["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX_VNNI", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16",
    "AMX_TILE", "AMX_INT8", "AMX_BF16"];

/** CMake options of llama-bench for a variant with these features (scripts/build-cpu-backend.mjs's, one CPU module with explicit flags). */
export function llamaBenchCmakeOptions(features: readonly string[]): string[] {
    return [
        "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_COMPILER=cc", "-DCMAKE_CXX_COMPILER=c++",
        "-DBUILD_SHARED_LIBS=ON", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=OFF", "-DGGML_NATIVE=OFF",
        ...X86_FEATURE_OPTIONS.map((f) => `-DGGML_${f}=${features.includes(f) ? "ON" : "OFF"}`),
        "-DGGML_OPENMP=OFF",
        "-DGGML_CUDA=OFF", "-DGGML_VULKAN=OFF", "-DGGML_METAL=OFF", "-DGGML_BLAS=OFF", "-DGGML_CCACHE=OFF",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    ];
}

/** llama.cpp's tools built like the engine's compiled CPU backend: llama-bench and llama-server share one build directory. */
type VariantTool = "llama-bench" | "llama-server";

async function buildVariantTool(tool: VariantTool, variant: string, features: readonly string[]): Promise<string> {
    const source = ensureSource();
    const buildDir = llamaBenchBuildDir(variant);
    fs.mkdirSync(buildDir, {recursive: true});
    const logFile = path.join(buildDir, "build.log");
    const started = Date.now();
    process.stderr.write(`selfrag bench: building ${tool} (CPU variant ${variant}'s flags) from ${source} into ${buildDir} (log: ${logFile}) ...\n`);
    await runLogged("cmake", ["-S", source, "-B", buildDir, ...llamaBenchCmakeOptions(features)], logFile);
    await runLogged("cmake", ["--build", buildDir, "--config", "Release", "--target", tool, "ggml-cpu", "-j", BUILD_JOBS], logFile);
    const binary = path.join(buildDir, "bin", tool);
    const module = path.join(buildDir, "bin", "libggml-cpu.so");
    if (!fs.existsSync(binary) || !fs.existsSync(module)) throw new Error(`build finished but ${binary} or ${module} is missing; see ${logFile}`);
    process.stderr.write(`selfrag bench: ${tool} built in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    return binary;
}

const pendingTools = new Map<VariantTool, Promise<string>>();

async function ensureVariantTool(tool: VariantTool): Promise<{binary: string, variant: string}> {
    const {variant, features} = compiledCpuVariant();
    const binary = path.join(llamaBenchBuildDir(variant), "bin", tool);
    if (fs.existsSync(binary) && fs.existsSync(path.join(llamaBenchBuildDir(variant), "bin", "libggml-cpu.so"))) return {binary, variant};
    // One build at a time per build directory (both tools share it); one per tool per process.
    let pending = pendingTools.get(tool);
    if (pending == null) {
        pending = Promise.all([...pendingTools.values()].map((p) => p.catch(() => undefined)))
            .then(() => buildVariantTool(tool, variant, features))
            .finally(() => pendingTools.delete(tool));
        pendingTools.set(tool, pending);
    }
    return {binary: await pending, variant};
}

/** Path of a llama-bench built like the engine's compiled CPU backend (same variant flags, compiler), building it the first time. */
export function ensureLlamaBench(): Promise<{binary: string, variant: string}> {
    return ensureVariantTool("llama-bench");
}

/**
 * Path of a llama-server built like the engine's compiled CPU backend (the 1B-shape serving comparison);
 * ensureLlamaServer() is the default GGML_NATIVE static build the fixture-model serving bench uses.
 */
export function ensureLikeForLikeLlamaServer(): Promise<{binary: string, variant: string}> {
    return ensureVariantTool("llama-server");
}

if (process.argv[1] != null && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const tool = process.argv[2];
    (tool === "llama-bench" ? ensureLlamaBench().then((b) => b.binary)
        : tool === "llama-server-variant" ? ensureLikeForLikeLlamaServer().then((b) => b.binary)
            : ensureLlamaServer()).then((binary) => console.log(binary), (error: unknown) => {
        console.error(error instanceof Error ? error.message : error);
        process.exitCode = 1;
    });
}
