import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

/** Root of the selfrag package (this file is dist/lib/paths.js). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The llama.cpp source of node-llama-cpp's release (`source download --skipBuild` puts it there). */
export function llamaCppSourceDir(): string {
    for (let dir = packageRoot; ; dir = path.dirname(dir)) {
        const candidate = path.join(dir, "node_modules", "node-llama-cpp", "llama", "llama.cpp");
        if (fs.existsSync(candidate)) return candidate;
        if (path.dirname(dir) === dir) break;
    }
    return path.join(packageRoot, "node_modules", "node-llama-cpp", "llama", "llama.cpp");
}

/** Where `selfrag` keeps pulled models, generated demo files and its llama.cpp runtime record: $SELFRAG_HOME or ~/.cache/selfrag. */
export function cacheDir(): string {
    const home = process.env.SELFRAG_HOME;
    return home != null && home !== "" ? path.resolve(home) : path.join(os.homedir(), ".cache", "selfrag");
}
