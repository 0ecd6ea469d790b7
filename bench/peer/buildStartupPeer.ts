// Builds the startup benchmark's C++ peer (startupPeer.cpp) with g++ against the llama.cpp headers
// of node-llama-cpp's release and the CPU libllama it ships (the library selfrag's addon links),
// into bench/.cache (git-ignored), once: it is rebuilt only when the source or the library changes.
//   node dist/bench/peer/buildStartupPeer.js      builds if needed and prints the binary path
import {spawnSync} from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {benchCacheDir, repoRoot} from "./repoRoot.js";

/** `node scripts/llama-paths.mjs <what>`: the same answers binding.gyp uses. */
function llamaPath(what: string): string {
    const result = spawnSync(process.execPath, [path.join(repoRoot(), "scripts", "llama-paths.mjs"), what], {encoding: "utf8"});
    if (result.status !== 0 || result.stdout === "") {
        throw new Error(`scripts/llama-paths.mjs ${what} failed: ${result.stderr.trim()} (run \`npm install\`; the llama.cpp ` +
            "headers come from `npx --no node-llama-cpp source download --skipBuild`)");
    }
    return result.stdout;
}

export interface StartupPeer {
    binary: string;
    /** Folder of the CPU libllama and its ggml backends (what node-llama-cpp's addon loads them from). */
    libDir: string;
}

/** The peer binary, compiled the first time (a few seconds) and whenever its source or libllama changes. */
export function ensureStartupPeer(): StartupPeer {
    const source = path.join(repoRoot(), "bench", "peer", "startupPeer.cpp");
    const libDir = llamaPath("cpu-libdir");
    const library = llamaPath("cpu-lib");
    const ggml = fs.readdirSync(libDir).filter((f) => /^libggml(-base)?(\.v[\d.]+)?\.so$/.test(f)).map((f) => path.join(libDir, f));
    const includes = [llamaPath("include"), llamaPath("ggml-include")];
    const key = crypto.createHash("sha256").update(fs.readFileSync(source)).update(JSON.stringify([library, fs.statSync(library).mtimeMs, ggml]))
        .digest("hex").slice(0, 16);
    const dir = path.join(benchCacheDir(), "startup-peer");
    const binary = path.join(dir, `startup-peer-${key}`);
    if (fs.existsSync(binary)) return {binary, libDir};
    fs.mkdirSync(dir, {recursive: true});
    const partial = `${binary}.${process.pid}.partial`;
    const args = ["-O2", "-std=c++17", ...includes.map((i) => `-I${i}`), source, "-o", partial, library, ...ggml, `-Wl,-rpath,${libDir}`];
    const result = spawnSync("g++", args, {encoding: "utf8"});
    if (result.status !== 0) {
        fs.rmSync(partial, {force: true});
        throw new Error(`g++ ${args.join(" ")} failed (${result.error?.message ?? `exit ${result.status}`}):\n${result.stderr}`);
    }
    fs.renameSync(partial, binary);
    return {binary, libDir};
}

if (process.argv[1] != null && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    try {
        console.log(ensureStartupPeer().binary);
    } catch (error) {
        console.error(error instanceof Error ? error.message : error);
        process.exitCode = 1;
    }
}
