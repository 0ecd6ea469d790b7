// Which ggml CPU backend the engine loads: the one `npm install` compiled for this CPU
// (scripts/build-cpu-backend.mjs, build/cpu-backend), else node-llama-cpp's prebuilt variants.
// The compiled module is used only with the CPU libggml-base.so it was linked against (same file,
// same size and time), so a node-llama-cpp update or another variant never meets a stale build;
// ggml's own feature score refuses it on a CPU without the instructions it was built for.
// The manifest names that library by absolute path: a copy of an install whose manifest still
// names the original's library (or any library outside this install's node_modules) is not used,
// since loading it would bring the other install's llama.cpp into this process.
import fs from "node:fs";
import path from "node:path";
import {SelfRagError} from "../errors.js";
import {packageRoot} from "../paths.js";
import {inThisInstall} from "./nodeLlamaCpp.js";
import {cpuBackendVariant, mappedFiles} from "./processMaps.js";

/** The CPU backend a process runs on. */
export interface CpuBackendInfo {
    /** ggml's CPU variant, e.g. "zen4", "haswell". */
    variant: string;
    /** "compiled": built by `npm install` for this machine; "prebuilt": node-llama-cpp's binary. */
    build: "compiled" | "prebuilt";
    /** The shared library mapped. */
    file: string;
}

interface CompiledManifest {
    variant: string;
    file: string;
    size: number;
    base: {path: string, size: number, mtimeMs: number};
}

/** A usable compiled backend: its folder (to load from) and the CPU binding of the base it was linked against. */
export interface CompiledCpuBackend {
    folder: string;
    variant: string;
    /** node-llama-cpp's CPU binding (llama-addon.node) next to that libggml-base.so. */
    bindingPath: string;
}

/** SELFRAG_CPU_BACKEND: "auto" (default: the compiled one when usable) or "prebuilt". */
function policy(): "auto" | "prebuilt" {
    const value = process.env.SELFRAG_CPU_BACKEND;
    if (value == null || value === "" || value === "auto") return "auto";
    if (value === "prebuilt") return "prebuilt";
    throw new SelfRagError(`SELFRAG_CPU_BACKEND must be "auto" or "prebuilt", got "${value}"`, "INVALID_ARGUMENT");
}

/**
 * The compiled backend when it exists, is allowed, and matches the prebuilt base library it was
 * linked against, a library of this install.
 */
export function compiledCpuBackend(): CompiledCpuBackend | undefined {
    if (policy() === "prebuilt") return undefined;
    const dir = process.env.SELFRAG_CPU_BACKEND_DIR;
    const folder = dir != null && dir !== "" ? path.resolve(dir) : path.join(packageRoot, "build", "cpu-backend");
    let manifest: CompiledManifest;
    try {
        manifest = JSON.parse(fs.readFileSync(path.join(folder, "backend.json"), "utf8")) as CompiledManifest;
    } catch {
        // Nothing lost: no manifest (not compiled here) or a garbled one means the prebuilt backend, as documented.
        return undefined;
    }
    if (typeof manifest.base?.path !== "string" || !inThisInstall(manifest.base.path)) return undefined;
    const base = fs.statSync(manifest.base.path, {throwIfNoEntry: false});
    if (base == null || base.size !== manifest.base.size || base.mtimeMs !== manifest.base.mtimeMs) return undefined;
    // A cut module would be mapped and crash the process on its missing pages (SIGBUS), not fail to load.
    if (fs.statSync(path.join(folder, manifest.file), {throwIfNoEntry: false})?.size !== manifest.size) return undefined;
    const bindingPath = path.join(path.dirname(manifest.base.path), "llama-addon.node");
    // Real path: it is compared with the binding mapped and the one getLlama() would load.
    return inThisInstall(bindingPath) ? {folder, variant: manifest.variant, bindingPath: fs.realpathSync(bindingPath)} : undefined;
}

/** The CPU backend mapped into this process (Linux: /proc/self/maps), or undefined elsewhere / before loading. */
export function loadedCpuBackend(): CpuBackendInfo | undefined {
    const file = mappedFiles().find((f) => cpuBackendVariant(f) != null);
    if (file == null) return undefined;
    return {variant: cpuBackendVariant(file)!, build: compiledFolderOf(file) ? "compiled" : "prebuilt", file};
}

function compiledFolderOf(file: string): boolean {
    return fs.existsSync(path.join(path.dirname(file), "backend.json"));
}
