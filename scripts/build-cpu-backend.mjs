// Compiles llama.cpp's CPU backend (ggml-cpu) for this machine from the llama.cpp source of
// node-llama-cpp's release, linked against node-llama-cpp's own prebuilt libggml-base.so.
//   node scripts/build-cpu-backend.mjs            (also run at the end of `npm install`)
// Why: the same tinyBLAS kernels built here run 25-40% faster than node-llama-cpp's prebuilt copy of
// them on the machines we measured (bench/results/cpu-backend.md); llama.cpp's own tools, built
// from source, get the faster numbers, and a selfrag process should too.
// What: exactly one of ggml's CPU variants (the one ggml's own score would pick for this CPU, e.g.
// "zen4"), built in ggml's variant mode, so the module keeps ggml's feature check: on a CPU that lacks
// a feature it was built for, ggml refuses to load it and selfrag falls back to the prebuilt one.
// Linux x86-64 only for now; elsewhere, or without CMake, nothing is built and nothing changes.
// Never fails the install: a failed build prints one line and leaves the prebuilt backend in use.
// SELFRAG_CPU_BACKEND_BUILD=0 skips it.
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {llamaCppSourceDir, llamaRelease, packageRoot, prebuiltVariants} from "./llama-paths.mjs";

// ggml's x86 feature names (ggml/src/CMakeLists.txt) -> /proc/cpuinfo flags, and each one's weight
// in ggml's score (ggml-cpu/arch/x86/cpu-feats.cpp, ggml_backend_cpu_x86_score).
const X86_FEATURES = {
    SSE42: {flags: ["sse4_2"], weight: 1 << 2},
    AVX: {flags: ["avx"], weight: 1 << 4},
    F16C: {flags: ["f16c"], weight: 1 << 1},
    FMA: {flags: ["fma"], weight: 1},
    AVX2: {flags: ["avx2"], weight: 1 << 5},
    BMI2: {flags: ["bmi2"], weight: 1 << 3},
    AVX_VNNI: {flags: ["avx_vnni"], weight: 1 << 6},
    AVX512: {flags: ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"], weight: 1 << 7},
    AVX512_VBMI: {flags: ["avx512vbmi"], weight: 1 << 8},
    AVX512_BF16: {flags: ["avx512_bf16"], weight: 1 << 9},
    AVX512_VNNI: {flags: ["avx512_vnni"], weight: 1 << 10},
    AMX_TILE: {flags: ["amx_tile"], weight: 0},
    AMX_INT8: {flags: ["amx_int8"], weight: 1 << 11}
};

/** The x86 variants llama.cpp defines (name and features), read from its CMakeLists.txt. */
export function x86Variants(sourceDir) {
    const cmake = fs.readFileSync(path.join(sourceDir, "ggml", "src", "CMakeLists.txt"), "utf8");
    // The x86 branch of `if (GGML_CPU_ALL_VARIANTS)`, up to the next architecture's branch.
    const block = cmake.indexOf("if (GGML_CPU_ALL_VARIANTS)");
    const start = block < 0 ? -1 : cmake.indexOf('GGML_SYSTEM_ARCH STREQUAL "x86"', block);
    if (start < 0) return [];
    const end = cmake.slice(start).search(/elseif\s*\(\s*GGML_SYSTEM_ARCH/);
    const section = cmake.slice(start, end < 0 ? undefined : start + end);
    return [...section.matchAll(/ggml_add_cpu_backend_variant\(\s*([\w.]+)([^)]*)\)/g)]
        .map((m) => ({name: m[1], features: m[2].trim().split(/\s+/).filter((f) => f !== "")}));
}

/** The variant ggml's score would load on a CPU with these flags: the highest score among those it supports. */
export function bestVariant(variants, cpuFlags) {
    let best;
    for (const variant of variants) {
        let score = 1;
        let supported = true;
        for (const feature of variant.features) {
            const known = X86_FEATURES[feature];
            if (known == null || !known.flags.every((f) => cpuFlags.has(f))) {
                supported = false;
                break;
            }
            score += known.weight;
        }
        if (supported && (best == null || score > best.score)) best = {...variant, score};
    }
    return best;
}

function cpuFlags() {
    const info = fs.readFileSync("/proc/cpuinfo", "utf8");
    const line = /^flags\s*:(.*)$/m.exec(info);
    return new Set((line?.[1] ?? "").trim().split(/\s+/));
}

function run(command, args, logFile) {
    const result = spawnSync(command, args, {cwd: packageRoot, encoding: "utf8", maxBuffer: 64 << 20});
    fs.appendFileSync(logFile, `$ ${command} ${args.join(" ")}\n${result.stdout ?? ""}${result.stderr ?? ""}\n`);
    if (result.error != null) return `${command}: ${result.error.message}`;
    if (result.status !== 0) return `${command} ${args[0]} exited with code ${result.status}`;
    return undefined;
}

/** Builds into buildDir/cpu-backend; returns what happened, for the install log and build/variants.json. */
export function buildCpuBackend(buildDir) {
    const outDir = path.join(buildDir, "cpu-backend");
    const skip = (reason) => {
        fs.rmSync(outDir, {recursive: true, force: true});
        return {built: false, reason};
    };
    if (process.env.SELFRAG_CPU_BACKEND_BUILD === "0") return skip("SELFRAG_CPU_BACKEND_BUILD=0");
    if (process.platform !== "linux" || process.arch !== "x64") return skip(`not built on ${process.platform}-${process.arch} (Linux x86-64 only)`);
    if (spawnSync("cmake", ["--version"], {stdio: "ignore"}).status !== 0) return skip("cmake not found");
    const cpu = prebuiltVariants().find((v) => v.name === "cpu");
    const base = cpu == null ? undefined : path.join(cpu.libDir, "libggml-base.so");
    if (base == null || !fs.existsSync(base)) return skip("node-llama-cpp's CPU libggml-base.so not found");
    const source = llamaCppSourceDir();
    const variant = bestVariant(x86Variants(source), cpuFlags());
    if (variant == null) return skip("no llama.cpp CPU variant matches this CPU's features");

    const treeDir = path.join(buildDir, "cpu-backend-build");
    fs.mkdirSync(treeDir, {recursive: true});
    const logFile = path.join(treeDir, "build.log");
    fs.writeFileSync(logFile, "");
    const started = Date.now();
    const error = run("cmake", ["-S", source, "-B", treeDir,
        "-DCMAKE_BUILD_TYPE=Release",
        // A loadable module per variant, each with ggml's CPU-feature score (what refuses it on a
        // CPU without its instructions); only the one named below is built.
        "-DBUILD_SHARED_LIBS=ON", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_NATIVE=OFF",
        // As node-llama-cpp's prebuilt CPU variants: no OpenMP (ggml's own thread pool).
        "-DGGML_OPENMP=OFF",
        "-DGGML_CUDA=OFF", "-DGGML_VULKAN=OFF", "-DGGML_METAL=OFF", "-DGGML_BLAS=OFF", "-DGGML_CCACHE=OFF",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF",
        "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF",
        // NEEDED libggml-base.so (no version suffix) and no RUNPATH into this tree: the module binds
        // to the libggml-base.so node-llama-cpp already loaded, never to a second copy built here.
        "-DCMAKE_PLATFORM_NO_VERSIONED_SONAME=ON", "-DCMAKE_SKIP_RPATH=ON"], logFile)
        ?? run("cmake", ["--build", treeDir, "--config", "Release", "--target", `ggml-cpu-${variant.name}`,
            "-j", String(Math.max(1, os.availableParallelism()))], logFile);
    const file = `libggml-cpu-${variant.name}.so`;
    const built = path.join(treeDir, "bin", file);
    if (error != null || !fs.existsSync(built)) return skip(`${error ?? `${file} missing after the build`} (log: ${path.relative(packageRoot, logFile)})`);
    fs.rmSync(outDir, {recursive: true, force: true});
    fs.mkdirSync(outDir, {recursive: true});
    fs.copyFileSync(built, path.join(outDir, file));
    const stat = fs.statSync(base);
    const manifest = {
        llamaRelease: llamaRelease(), variant: variant.name, features: variant.features, file,
        // Checked before loading: the loader maps a cut file and dies on the missing pages (SIGBUS).
        size: fs.statSync(path.join(outDir, file)).size,
        // The prebuilt base library it was linked against: a different one (node-llama-cpp updated,
        // another variant) and the runtime uses the prebuilt backend instead.
        base: {path: base, size: stat.size, mtimeMs: stat.mtimeMs},
        compiler: spawnSync("c++", ["--version"], {encoding: "utf8"}).stdout?.split("\n")[0] ?? "unknown",
        buildSeconds: Math.round((Date.now() - started) / 100) / 10,
        builtAt: new Date().toISOString()
    };
    fs.writeFileSync(path.join(outDir, "backend.json"), JSON.stringify(manifest, null, 2) + "\n");
    return {built: true, variant: variant.name, folder: path.relative(packageRoot, outDir), buildSeconds: manifest.buildSeconds};
}

/** buildCpuBackend with one line before and one after, as the install log shows it. */
export function buildCpuBackendLogged(buildDir) {
    console.log("selfrag: compiling llama.cpp's CPU backend for this CPU (one to four minutes on 2 cores; SELFRAG_CPU_BACKEND_BUILD=0 skips it) ...");
    const result = buildCpuBackend(buildDir);
    console.log(result.built ? `selfrag: CPU backend ${result.variant} compiled in ${result.buildSeconds} s (${result.folder})`
        : `selfrag: CPU backend not compiled (${result.reason}): node-llama-cpp's prebuilt one is used`);
    return result;
}

if (process.argv[1] != null && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    buildCpuBackendLogged(process.env.SELFRAG_BUILD_DIR != null ? path.resolve(process.env.SELFRAG_BUILD_DIR) : path.join(packageRoot, "build"));
}
