// Where node-llama-cpp keeps what the addon builds against: the llama.cpp headers of its release
// and the prebuilt shared libraries of each variant (cpu, cuda, vulkan ...) for this platform.
// Used by build-addon.mjs and, through its command line, by binding.gyp.
import {createRequire} from "node:module";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";

const require = createRequire(import.meta.url);
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

// Node's resolution walk (node_modules of this folder, then of each parent), without going through
// "exports", which hides package.json in node-llama-cpp.
function findPackageDir(name, fromDir) {
    for (let dir = fromDir; ; dir = path.dirname(dir)) {
        const candidate = path.join(dir, "node_modules", name);
        if (fs.existsSync(path.join(candidate, "package.json"))) return candidate;
        if (path.dirname(dir) === dir) return undefined;
    }
}

export function nodeLlamaCppDir() {
    const dir = findPackageDir("node-llama-cpp", packageRoot);
    if (dir == null) throw new Error("node-llama-cpp is not installed: run `npm install`");
    return dir;
}

export function llamaCppSourceDir() {
    return path.join(nodeLlamaCppDir(), "llama", "llama.cpp");
}

export function llamaRelease() {
    const file = path.join(nodeLlamaCppDir(), "llama", "binariesGithubRelease.json");
    return JSON.parse(fs.readFileSync(file, "utf8")).release;
}

function platformKey() {
    const os = process.platform === "darwin" ? "mac" : process.platform === "win32" ? "win" : "linux";
    return `${os}-${process.arch}`;
}

const libraryPattern = process.platform === "win32" ? /^llama.*\.lib$/
    : process.platform === "darwin" ? /^libllama(\.[a-z-]+)?(\.v[\d.]+)?\.dylib$/
        : /^libllama(\.[a-z-]+)?(\.v[\d.]+)?\.so$/;

// Every prebuilt variant installed for this platform, CPU first.
export function prebuiltVariants() {
    const nlcDir = nodeLlamaCppDir();
    const key = platformKey();
    const suffixes = ["", "-metal", "-cuda", "-cuda-ext", "-vulkan"];
    const variants = [];
    for (const suffix of suffixes) {
        const pkgDir = findPackageDir(`@node-llama-cpp/${key}${suffix}`, nlcDir);
        if (pkgDir == null) continue;
        const binsDir = path.join(pkgDir, "bins");
        if (!fs.existsSync(binsDir)) continue;
        for (const dir of fs.readdirSync(binsDir)) {
            const libDir = path.join(binsDir, dir);
            if (!fs.statSync(libDir).isDirectory()) continue;
            const library = fs.readdirSync(libDir).find((file) => libraryPattern.test(file) && !file.includes("common"));
            if (library == null) continue;
            variants.push({
                name: suffix === "" ? (key.startsWith("mac-arm64") ? "metal" : "cpu") : suffix.slice(1),
                package: `@node-llama-cpp/${key}${suffix}`,
                libDir,
                library: path.join(libDir, library),
                soname: library
            });
        }
    }
    return variants;
}

// `node scripts/llama-paths.mjs include|ggml-include|addon-api|cpu-lib|cpu-libdir` for binding.gyp.
if (process.argv[1] != null && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const what = process.argv[2];
    const cpu = () => prebuiltVariants().find((v) => v.name === "cpu" || v.name === "metal");
    const answers = {
        "include": () => path.join(llamaCppSourceDir(), "include"),
        "ggml-include": () => path.join(llamaCppSourceDir(), "ggml", "include"),
        "addon-api": () => require("node-addon-api").include_dir,
        "cpu-lib": () => cpu()?.library,
        "cpu-libdir": () => cpu()?.libDir
    };
    const answer = answers[what]?.();
    if (answer == null) {
        console.error(`llama-paths: cannot answer "${what}"`);
        process.exit(1);
    }
    process.stdout.write(answer);
}
