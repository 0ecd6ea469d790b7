// What this process has mapped, from /proc/self/maps (Linux): the one place that reads it. The
// engine asks it which llama.cpp binary and which ggml backends the dynamic loader actually put in
// the process, which is the truth when node-llama-cpp picked or fell back on its own.
import fs from "node:fs";
import path from "node:path";

/**
 * The files mapped into this process, each once, in map order; [] where there is no
 * /proc/self/maps (not Linux).
 */
export function mappedFiles(): string[] {
    let maps: string;
    try {
        maps = fs.readFileSync("/proc/self/maps", "utf8");
    } catch (error) {
        // Only "there is no such file" (macOS, Windows) means nothing is known; anything else is a fault to see.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
        throw error;
    }
    const files = new Set<string>();
    for (const line of maps.split("\n")) {
        // address perms offset dev inode [path]: the path is the sixth field and may hold spaces.
        const at = line.indexOf("/");
        if (at >= 0) files.add(line.slice(at));
    }
    return [...files];
}

/** node-llama-cpp's binding (llama-addon.node of any variant or local build). */
export function isLlamaBinding(file: string): boolean {
    return path.basename(file) === "llama-addon.node";
}

/** A libllama of any variant: libllama.so, libllama.v0.5.0.so, libllama.cuda.v0.5.0.so (not libllama-common). */
export function llamaLibrarySoname(file: string): string | undefined {
    const name = path.basename(file);
    return /^libllama(?:\.[a-z-]+)?(?:\.v[\d.]+)?\.so$/.test(name) ? name : undefined;
}

/** A ggml backend module (libggml-cpu-zen4.so, libggml-cuda.so ...); libggml-base.so is linked, not a backend. */
export function isGgmlBackend(file: string): boolean {
    const name = path.basename(file);
    return /^libggml-[^/]+\.so$/.test(name) && name !== "libggml-base.so";
}

/** ggml's CPU variant of a CPU backend module ("zen4" for libggml-cpu-zen4.so, "cpu" for libggml-cpu.so), else undefined. */
export function cpuBackendVariant(file: string): string | undefined {
    const match = /^libggml-cpu(?:-([\w.]+))?\.so$/.exec(path.basename(file));
    return match == null ? undefined : match[1] ?? "cpu";
}

/** Any library of llama.cpp, ggml or the addons (what must come from one install). */
export function isLlamaStackLibrary(file: string): boolean {
    const name = path.basename(file);
    return isLlamaBinding(file) || name === "selfrag.node" || /^lib(?:llama|ggml)[^/]*\.so(?:\.[\d.]+)?$/.test(name);
}
