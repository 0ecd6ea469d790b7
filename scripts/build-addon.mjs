// Builds the selfrag addon against node-llama-cpp's prebuilt llama.cpp (run by `npm install`).
//   node scripts/build-addon.mjs [--gyp] [--variants cpu,cuda]
// cmake-js is the primary build: the sources compile once and link once per installed variant
// (cpu, cuda, vulkan ...). --gyp builds the CPU variant with node-gyp instead (no CMake needed).
// The result is recorded in build/variants.json, which lib/native/addon.ts reads.
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";
import {buildCpuBackendLogged} from "./build-cpu-backend.mjs";
import {llamaCppSourceDir, llamaRelease, nodeLlamaCppDir, packageRoot, prebuiltVariants} from "./llama-paths.mjs";

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const useGyp = args.includes("--gyp");
const variantsArg = args.includes("--variants") ? args[args.indexOf("--variants") + 1] : process.env.SELFRAG_VARIANTS;
// SELFRAG_BUILD_DIR: build elsewhere (the install test that hides nvcc builds into a scratch folder).
const buildDir = process.env.SELFRAG_BUILD_DIR != null ? path.resolve(process.env.SELFRAG_BUILD_DIR) : path.join(packageRoot, "build");
const manifestPath = path.join(buildDir, "variants.json");

function fail(message) {
    console.error(`\nselfrag: addon build failed: ${message}\n`);
    process.exit(1);
}

function run(command, commandArgs, what) {
    console.log(`selfrag: ${what}`);
    const result = spawnSync(command, commandArgs, {cwd: packageRoot, stdio: "inherit", env: process.env});
    if (result.error != null) return `${what}: ${result.error.message}`;
    if (result.status !== 0) return `${what} exited with code ${result.status}`;
    return undefined;
}

function hasCommand(command) {
    return spawnSync(command, ["--version"], {stdio: "ignore"}).status === 0;
}

// nvcc from CUDACXX or PATH (CMake's own lookup order), with its release ("13.0"), or undefined.
function findNvcc() {
    const candidates = process.env.CUDACXX != null && process.env.CUDACXX !== "" ? [process.env.CUDACXX]
        : (process.env.PATH ?? "").split(path.delimiter).filter((d) => d !== "").map((d) => path.join(d, "nvcc"));
    for (const candidate of candidates) {
        if (!fs.existsSync(candidate)) continue;
        const result = spawnSync(candidate, ["--version"], {encoding: "utf8"});
        if (result.status !== 0) continue;
        return {path: candidate, release: /release (\d+\.\d+)/.exec(result.stdout)?.[1] ?? "unknown"};
    }
    return undefined;
}

// 1. llama.cpp headers of node-llama-cpp's exact release, from the git bundle it ships (offline).
const header = path.join(llamaCppSourceDir(), "include", "llama.h");
if (!fs.existsSync(header)) {
    const cli = path.join(nodeLlamaCppDir(), "dist", "cli", "cli.js");
    const error = run(process.execPath, [cli, "source", "download", "--skipBuild", "--noUsageExample"],
        "getting llama.cpp headers from node-llama-cpp (source download --skipBuild)");
    if (error != null || !fs.existsSync(header)) {
        fail(`${error ?? "llama.h not found"}\nRun: npx --no node-llama-cpp source download --skipBuild`);
    }
}

// 2. Variants to link against.
let variants = prebuiltVariants();
if (variants.length === 0) {
    fail(`node-llama-cpp ships no prebuilt llama.cpp for ${process.platform}-${process.arch}; ` +
        "selfrag links those binaries and cannot build without them");
}
if (variantsArg != null && variantsArg !== "") {
    const wanted = new Set(variantsArg.split(","));
    variants = variants.filter((v) => wanted.has(v.name));
}
if (useGyp) variants = variants.filter((v) => v.name === "cpu" || v.name === "metal");
if (variants.length === 0) fail(`none of the requested variants (${variantsArg}) is installed`);

const previous = fs.existsSync(manifestPath) ? JSON.parse(fs.readFileSync(manifestPath, "utf8")) : {builds: []};
const builder = useGyp || !hasCommand("cmake") ? "node-gyp" : "cmake-js";
if (!useGyp && builder === "node-gyp") console.log("selfrag: cmake not found, building with node-gyp instead");

let builds = [];
// What became of the CUDA kernels (cuda variant only): {built, nvcc, archs} or {built: false, reason}.
let cudaKernels;
if (builder === "cmake-js") {
    const outDir = path.join(buildDir, "cmake");
    const entries = variants.map((v) => {
        const addonDir = path.join(outDir, "variants", v.name);
        const rpath = process.platform === "darwin" ? `@loader_path/${path.relative(addonDir, v.libDir)}`
            : `$ORIGIN/${path.relative(addonDir, v.libDir)}`;
        return `${v.name}|${v.library}|${rpath}`;
    });
    const cmakeJs = path.join(path.dirname(require.resolve("cmake-js/package.json")), "bin", "cmake-js");
    // configure, then build: `cmake-js compile` keeps a cached configuration and its options.
    const compile = (extra, what) => {
        const common = ["--out", outDir, "--log-level", "warn"];
        return run(process.execPath, [cmakeJs, "configure", ...common,
            `--CDSELFRAG_LLAMA_INCLUDE=${path.join(llamaCppSourceDir(), "include")}`,
            `--CDSELFRAG_GGML_INCLUDE=${path.join(llamaCppSourceDir(), "ggml", "include")}`,
            `--CDSELFRAG_NODE_ADDON_API=${require("node-addon-api").include_dir.replace(/^"|"$/g, "")}`,
            `--CDSELFRAG_VARIANTS=${entries.join(";")}`, ...extra], `${what}: configure`)
            ?? run(process.execPath, [cmakeJs, "build", ...common], `${what}: build`);
    };
    const what = `building the addon with cmake-js for ${variants.map((v) => v.name).join(", ")}`;
    // The CUDA kernels go into the cuda variant when nvcc is here; if nvcc fails, the same build
    // runs again without them, so a CUDA problem costs the kernels, never the install.
    let error;
    if (variants.some((v) => v.name === "cuda")) {
        const nvcc = process.env.SELFRAG_CUDA_KERNELS === "0" ? undefined : findNvcc();
        if (nvcc == null) {
            cudaKernels = {built: false, reason: process.env.SELFRAG_CUDA_KERNELS === "0" ? "SELFRAG_CUDA_KERNELS=0" : "nvcc not found"};
            console.log(`selfrag: CUDA kernels skipped (${cudaKernels.reason}): the cuda variant reduces logits on the CPU`);
        } else {
            error = compile(["--CDSELFRAG_CUDA_KERNELS=ON", `--CDCMAKE_CUDA_COMPILER=${nvcc.path}`],
                `${what}, compiling native/cuda/*.cu with nvcc ${nvcc.release} (${nvcc.path})`);
            if (error == null) {
                cudaKernels = {built: true, nvcc: nvcc.release};
            } else {
                cudaKernels = {built: false, reason: `nvcc ${nvcc.release} build failed: ${error}`};
                console.log(`selfrag: CUDA kernels not built (${cudaKernels.reason}; output above): building without them`);
                error = undefined;
            }
        }
    }
    if (cudaKernels?.built !== true) error = compile(["--CDSELFRAG_CUDA_KERNELS=OFF"], what);
    if (error != null) {
        fail(`${error}\nNeeds CMake >= 3.18 and a C++17 compiler (Debian: apt-get install cmake g++). ` +
            "Then run: npm run build:addon  (or without CMake: npm run build:addon:gyp)");
    }
    builds = variants.map((v) => ({
        builder, variant: v.name, soname: v.soname, libDir: v.libDir,
        addon: path.relative(packageRoot, path.join(outDir, "variants", v.name, "selfrag.node")),
        ...(v.name === "cuda" && cudaKernels != null ? {cudaKernels} : {})
    }));
} else {
    const nodeGyp = process.env.npm_config_node_gyp ?? (() => {
        try {
            return require.resolve("node-gyp/bin/node-gyp.js");
        } catch {
            return undefined;
        }
    })();
    if (nodeGyp == null) fail("node-gyp not found: run this through npm (npm run build:addon:gyp)");
    const gypArgs = [nodeGyp, "configure", "build"];
    if (process.env.npm_config_nodedir != null) gypArgs.push(`--nodedir=${process.env.npm_config_nodedir}`);
    const error = run(process.execPath, gypArgs, "building the CPU addon with node-gyp");
    if (error != null) fail(`${error}\nNeeds python3, make and a C++17 compiler.`);
    const v = variants[0];
    builds = [{builder, variant: v.name, soname: v.soname, libDir: v.libDir,
        addon: path.relative(packageRoot, path.join(buildDir, "Release", "selfrag.node"))}];
}

for (const b of builds) {
    if (!fs.existsSync(path.join(packageRoot, b.addon))) fail(`the build reported success but ${b.addon} is missing`);
}
// Keep builds of the other builder (a gyp build next to the cmake one) so both stay usable.
const kept = previous.builds.filter((b) => b.builder !== builder && fs.existsSync(path.join(packageRoot, b.addon)));
fs.mkdirSync(buildDir, {recursive: true});
const cudaHost = path.join(buildDir, "cmake", "cuda-host", "selfrag_cuda_host.node");
// llama.cpp's CPU backend compiled for this machine (scripts/build-cpu-backend.mjs); never fails the install.
const cpuBackend = buildCpuBackendLogged(buildDir);
fs.writeFileSync(manifestPath, JSON.stringify({llamaRelease: llamaRelease(), builds: [...builds, ...kept], cpuBackend,
    // The host build of the CUDA device functions comes from cmake-js; a node-gyp build keeps it.
    ...(builder === "cmake-js" ? (fs.existsSync(cudaHost) ? {cudaHost: path.relative(packageRoot, cudaHost)} : {})
        : previous.cudaHost != null ? {cudaHost: previous.cudaHost} : {})}, null, 2) + "\n");
console.log(`selfrag: addon built (${builds.map((b) => `${b.variant}: ${b.addon}`).join(", ")})`);
