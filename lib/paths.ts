import fs from "node:fs";
import path from "node:path";
import {packageRoot} from "./engine/addon.js";

/** The llama.cpp source of node-llama-cpp's release (`source download --skipBuild` puts it there). */
export function llamaCppSourceDir(): string {
    for (let dir = packageRoot; ; dir = path.dirname(dir)) {
        const candidate = path.join(dir, "node_modules", "node-llama-cpp", "llama", "llama.cpp");
        if (fs.existsSync(candidate)) return candidate;
        if (path.dirname(dir) === dir) break;
    }
    return path.join(packageRoot, "node_modules", "node-llama-cpp", "llama", "llama.cpp");
}
