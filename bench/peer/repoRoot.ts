// Locates the selfrag checkout at run time. The peer files run compiled, either as
// dist/bench/peer/*.js (the project build) or from a separate outDir such as /tmp/peer-dist
// (when lib/ is mid-rewrite and the project build fails), so a fixed "../.." is not enough.
import fs from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";

function isSelfragRoot(dir: string): boolean {
    const file = path.join(dir, "package.json");
    if (!fs.existsSync(file)) return false;
    try {
        return (JSON.parse(fs.readFileSync(file, "utf8")) as {name?: unknown}).name === "selfrag";
    } catch {
        return false;
    }
}

function searchUp(start: string): string | undefined {
    for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
        if (isSelfragRoot(dir)) return dir;
        if (path.dirname(dir) === dir) return undefined;
    }
}

let cached: string | undefined;

/** The selfrag package root: searched upwards from this module, then from the working directory. */
export function repoRoot(): string {
    cached ??= searchUp(path.dirname(fileURLToPath(import.meta.url))) ?? searchUp(process.cwd());
    if (cached == null) throw new Error("selfrag checkout not found: run from inside /work/main (or a copy of it)");
    return cached;
}

/** bench/.cache in the source tree (git-ignored): models and the llama-server build live there. */
export function benchCacheDir(): string {
    return path.join(repoRoot(), "bench", ".cache");
}
