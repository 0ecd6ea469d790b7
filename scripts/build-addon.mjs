// Builds the selfrag addon against node-llama-cpp's prebuilt llama.cpp (run by `npm install`).
//   node scripts/build-addon.mjs [--gyp] [--variants cpu,cuda]
// cmake-js is the primary build: the sources compile once and link once per installed variant
// (cpu, cuda, vulkan ...). --gyp builds the CPU variant with node-gyp instead (no CMake needed).
// The result is recorded in build/variants.json, which lib/native/addon.ts reads.
import {spawnSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";
import {llamaCppSourceDir, llamaRelease, nodeLlamaCppDir, packageRoot, prebuiltVariants} from "./llama-paths.mjs";

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const useGyp = args.includes("--gyp");
const variantsArg = args.includes("--variants") ? args[args.indexOf("--variants") + 1] : process.env.SELFRAG_VARIANTS;
const buildDir = path.join(packageRoot, "build");
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
if (builder === "cmake-js") {
    const outDir = path.join(buildDir, "cmake");
    const entries = variants.map((v) => {
        const addonDir = path.join(outDir, "variants", v.name);
        const rpath = process.platform === "darwin" ? `@loader_path/${path.relative(addonDir, v.libDir)}`
            : `$ORIGIN/${path.relative(addonDir, v.libDir)}`;
        return `${v.name}|${v.library}|${rpath}`;
    });
    const cmakeJs = path.join(path.dirname(require.resolve("cmake-js/package.json")), "bin", "cmake-js");
    const error = run(process.execPath, [cmakeJs, "compile", "--out", outDir, "--log-level", "warn",
        `--CDSELFRAG_LLAMA_INCLUDE=${path.join(llamaCppSourceDir(), "include")}`,
        `--CDSELFRAG_GGML_INCLUDE=${path.join(llamaCppSourceDir(), "ggml", "include")}`,
        `--CDSELFRAG_NODE_ADDON_API=${require("node-addon-api").include_dir.replace(/^"|"$/g, "")}`,
        `--CDSELFRAG_VARIANTS=${entries.join(";")}`], `building the addon with cmake-js for ${variants.map((v) => v.name).join(", ")}`);
    if (error != null) {
        fail(`${error}\nNeeds CMake >= 3.18 and a C++17 compiler (Debian: apt-get install cmake g++). ` +
            "Then run: npm run build:addon  (or without CMake: npm run build:addon:gyp)");
    }
    builds = variants.map((v) => ({
        builder, variant: v.name, soname: v.soname, libDir: v.libDir,
        addon: path.relative(packageRoot, path.join(outDir, "variants", v.name, "selfrag.node"))
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
fs.writeFileSync(manifestPath, JSON.stringify({llamaRelease: llamaRelease(), builds: [...builds, ...kept]}, null, 2) + "\n");
console.log(`selfrag: addon built (${builds.map((b) => `${b.variant}: ${b.addon}`).join(", ")})`);
