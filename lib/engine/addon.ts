// The one module that loads the .node file. It brings up node-llama-cpp first (getLlama() loads
// the llama.cpp variant for this machine: CPU, CUDA, Vulkan or Metal), then loads the selfrag
// addon built against that same variant, so both share one llama.cpp and one backend registry.
import fs from "node:fs";
import {createRequire} from "node:module";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {getLlama, type Llama, type LlamaLogLevel} from "node-llama-cpp";
import {SelfRagError} from "../errors.js";
import type {NativeAddon} from "./types.js";

export type GpuOption = "auto" | false | "cuda" | "vulkan" | "metal";

export interface LoadedAddon {
    addon: NativeAddon;
    llama: Llama;
    /** The llama.cpp variant in use ("cpu", "cuda", "vulkan", "metal"). */
    variant: string;
    addonPath: string;
}

interface BuildManifest {
    llamaRelease: string;
    builds: {builder: string, variant: string, soname: string, libDir: string, addon: string}[];
}

const requireNative = createRequire(import.meta.url);
/** Root of the selfrag package (this file is dist/lib/native/addon.js). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

let loading: Promise<LoadedAddon> | undefined;
let loadedGpu: GpuOption | undefined;

/** Loads node-llama-cpp and the addon once per process; later calls share the result. */
export function loadAddon(options: {gpu?: GpuOption} = {}): Promise<LoadedAddon> {
    const gpu = options.gpu ?? "auto";
    if (loading != null) {
        if (gpu !== "auto" && loadedGpu !== gpu) {
            return Promise.reject(new SelfRagError(
                `llama.cpp is already loaded in this process with gpu=${String(loadedGpu)}; ` +
                `one process runs one llama.cpp variant, so gpu=${String(gpu)} cannot be honoured`, "INVALID_STATE"));
        }
        return loading;
    }
    loadedGpu = gpu;
    loading = doLoad(gpu);
    loading.catch(() => {
        loading = undefined;
    });
    return loading;
}

const levelOrder: LlamaLogLevel[] = ["disabled", "fatal", "error", "warn", "info", "log", "debug"] as LlamaLogLevel[];
const recentLog: string[] = [];

/**
 * The llama.cpp warnings and errors logged since the last call: llama.cpp reports why a file
 * failed to load only through its log, so error messages quote it.
 */
export function takeRecentLlamaLog(): string[] {
    return recentLog.splice(0, recentLog.length);
}

function logger(printLevel: LlamaLogLevel) {
    return (level: LlamaLogLevel, message: string) => {
        const rank = levelOrder.indexOf(level);
        if (rank >= 1 && rank <= 3) {
            recentLog.push(message.trim());
            if (recentLog.length > 50) recentLog.shift();
        }
        if (rank >= 1 && rank <= levelOrder.indexOf(printLevel)) process.stderr.write(`[llama.cpp] ${message.trimEnd()}\n`);
    };
}

async function doLoad(gpu: GpuOption): Promise<LoadedAddon> {
    const printLevel = (process.env.SELFRAG_LOG_LEVEL ?? "disabled") as LlamaLogLevel;
    let llama: Llama;
    try {
        llama = await getLlama({gpu, build: "never", logLevel: "warn" as LlamaLogLevel, logger: logger(printLevel),
            progressLogs: false, skipDownload: true});
    } catch (error) {
        throw new SelfRagError(`node-llama-cpp could not load llama.cpp (gpu=${String(gpu)}): ${(error as Error).message}`,
            "ADDON_LOAD_FAILED", {cause: error});
    }
    const variant = llama.gpu === false ? "cpu" : llama.gpu;
    const candidates = addonCandidates(variant);
    const failures: string[] = [];
    for (const candidate of candidates) {
        try {
            const addon = requireNative(candidate) as NativeAddon;
            addon.setErrorClass(SelfRagError);
            return {addon, llama, variant, addonPath: candidate};
        } catch (error) {
            failures.push(`${candidate}: ${(error as Error).message}`);
        }
    }
    throw new SelfRagError(
        `could not load the selfrag addon for llama.cpp variant "${variant}"` +
        (failures.length > 0 ? ` (tried: ${failures.join("; ")})` : "") +
        "; build it with `npm run build:addon` (CMake and a C++17 compiler) or `npm run build:addon:gyp`",
        candidates.length === 0 && failures.length === 0 ? "ADDON_NOT_BUILT" : "ADDON_LOAD_FAILED");
}

/** Which libllama the process actually mapped (Linux): the truth when node-llama-cpp fell back. */
function loadedLlamaSoname(): string | undefined {
    try {
        const maps = fs.readFileSync("/proc/self/maps", "utf8");
        const match = maps.match(/\/(libllama(?:\.[a-z-]+)?(?:\.v[\d.]+)?\.so)\s*$/m);
        return match?.[1];
    } catch {
        return undefined;
    }
}

function addonCandidates(variant: string): string[] {
    if (process.env.SELFRAG_ADDON != null && process.env.SELFRAG_ADDON !== "") {
        return [path.resolve(process.env.SELFRAG_ADDON)];
    }
    const manifestPath = path.join(packageRoot, "build", "variants.json");
    if (!fs.existsSync(manifestPath)) {
        throw new SelfRagError(
            `the selfrag native addon is not built (${manifestPath} is missing); ` +
            "run `npm run build:addon` (needs CMake and a C++17 compiler) or `npm run build:addon:gyp`",
            "ADDON_NOT_BUILT");
    }
    const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8")) as BuildManifest;
    const soname = loadedLlamaSoname();
    const matching = manifest.builds.filter((b) => soname != null ? b.soname === soname : b.variant === variant);
    if (matching.length === 0) {
        throw new SelfRagError(
            `no selfrag addon was built for the llama.cpp node-llama-cpp loaded (${soname ?? variant}); built: ` +
            `${manifest.builds.map((b) => b.variant).join(", ") || "none"}. Run \`npm run build:addon\` again.`,
            "ADDON_NOT_BUILT");
    }
    // cmake-js builds first: they are the primary build.
    matching.sort((a, b) => Number(b.builder === "cmake-js") - Number(a.builder === "cmake-js"));
    return matching.map((b) => path.join(packageRoot, b.addon));
}
