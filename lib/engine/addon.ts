// The one module that loads the .node file. It brings up node-llama-cpp first (getLlama() loads
// the llama.cpp variant for this machine: CPU, CUDA, Vulkan or Metal), then loads the selfrag
// addon built against that same variant, so both share one llama.cpp and one backend registry.
// node-llama-cpp's JavaScript is imported only here and only when needed: a process whose CPU
// runtime was recorded (runtimeRecord.ts) loads node-llama-cpp's binary straight away instead.
// What this relies on in node-llama-cpp beyond its public API is in nodeLlamaCpp.ts.
import fs from "node:fs";
import {createRequire} from "node:module";
import path from "node:path";
import type {Llama, LlamaLogLevel} from "node-llama-cpp";
import {SelfRagError} from "../errors.js";
import {packageRoot} from "../paths.js";
import {markPhase} from "../timings.js";
import {compiledCpuBackend, loadedCpuBackend, type CompiledCpuBackend, type CpuBackendInfo} from "./cpuBackend.js";
import {bindingPassesTest, bringUpCpuBinding, cpuBindingGetLlamaWouldLoad, getLlamaFor, preloadBackends, type LlamaBinding,
    type LlamaGpu} from "./nodeLlamaCpp.js";
import {llamaLibrarySoname, mappedFiles} from "./processMaps.js";
import type {NativeAddon} from "./types.js";
import {cacheEnabled, forgetCpuRuntime, pinBackends, pinnedBackendFolder, recordCpuRuntime, recordedCpuBinding} from "./runtimeRecord.js";

export type GpuOption = LlamaGpu;

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

/** llama.cpp as the engine needs it: the selfrag addon on a loaded llama.cpp, node-llama-cpp's `Llama` only if it was created. */
export interface EngineRuntime {
    addon: NativeAddon;
    /** The llama.cpp variant in use ("cpu", "cuda", "vulkan", "metal"). */
    variant: string;
    addonPath: string;
    /** CPU cores useful for math (node-llama-cpp's count). */
    mathCores: number;
    /** "node-llama-cpp": brought up by getLlama(); "direct": from a recorded CPU runtime, without node-llama-cpp's JavaScript. */
    via: "node-llama-cpp" | "direct";
    /** The ggml CPU backend mapped (Linux), compiled for this machine or node-llama-cpp's prebuilt one. */
    cpuBackend?: CpuBackendInfo;
    /** node-llama-cpp's Llama on the same llama.cpp (created by getLlama(); on a direct runtime only once asked for). */
    llama?: Llama;
}

let loading: Promise<EngineRuntime> | undefined;
let loadedGpu: GpuOption | undefined;
let withLlama: Promise<Llama> | undefined;
/** node-llama-cpp's binding when loaded directly: held so its exports (and the backend they own) live as long as the process. */
let directBinding: LlamaBinding | undefined;

/** Loads node-llama-cpp and the addon once per process; later calls share the result. */
export async function loadAddon(options: {gpu?: GpuOption} = {}): Promise<LoadedAddon> {
    const runtime = await loadEngine({gpu: options.gpu, nodeLlamaCpp: true});
    return {addon: runtime.addon, llama: runtime.llama!, variant: runtime.variant, addonPath: runtime.addonPath};
}

/**
 * Loads llama.cpp and the addon once per process; later calls share it. With `nodeLlamaCpp: false`
 * (what the engine alone needs) a recorded CPU runtime is loaded directly, skipping node-llama-cpp's
 * JavaScript, GPU probing and binary test; `true` also makes node-llama-cpp's `Llama` (runtime.llama).
 */
export function loadEngine(options: {gpu?: GpuOption, nodeLlamaCpp?: boolean} = {}): Promise<EngineRuntime> {
    const gpu = options.gpu ?? "auto";
    const nodeLlamaCpp = options.nodeLlamaCpp ?? false;
    if (loading != null) {
        if (gpu !== "auto" && loadedGpu !== gpu) {
            return Promise.reject(new SelfRagError(
                `llama.cpp is already loaded in this process with gpu=${String(loadedGpu)}; ` +
                `one process runs one llama.cpp variant, so gpu=${String(gpu)} cannot be honoured`, "INVALID_STATE"));
        }
        return nodeLlamaCpp ? loading.then(ensureLlama) : loading;
    }
    loadedGpu = gpu;
    loading = bringUp(gpu, nodeLlamaCpp);
    loading.catch(() => {
        loading = undefined;
    });
    return loading;
}

async function bringUp(gpu: GpuOption, nodeLlamaCpp: boolean): Promise<EngineRuntime> {
    const compiled = compiledCpuBackend();
    const recorded = recordedCpuBinding(gpu);
    // A recorded CPU runtime loads directly.
    let runtime = !nodeLlamaCpp && recorded != null ? await loadDirect(gpu, recorded, compiled) : undefined;
    // The compiled CPU backend may go into a binding only when that binding is the one getLlama()
    // brings up (else, say a local build is picked, the backend would sit in a llama.cpp that is
    // not used, beside a second one that is): known from this install's record, or in a first
    // process from node-llama-cpp's own choice of binary, tested as getLlama() tests it.
    let known = recorded;
    if (runtime == null && known == null && compiled != null && (gpu === false || gpu === "auto") &&
        await cpuBindingGetLlamaWouldLoad(gpu) === compiled.bindingPath && await bindingPassesTest(compiled.bindingPath)) {
        known = compiled.bindingPath;
        // The engine alone needs no getLlama(): the first process loads the binary directly too,
        // and records it (SELFRAG_RUNTIME_CACHE=0 keeps every process on getLlama()).
        if (!nodeLlamaCpp && cacheEnabled()) {
            runtime = await loadDirect(gpu, known, compiled);
            if (runtime != null) recordCpuRuntime(gpu);
        }
    }
    runtime ??= await doLoad(gpu, compiled != null && known === compiled.bindingPath ? compiled : undefined);
    markPhase("backend", runtime.via);
    return {...runtime, cpuBackend: loadedCpuBackend()};
}

/**
 * node-llama-cpp's CPU binary brought up directly, then the addon. undefined (and the record
 * dropped) when the binary does not come up as the CPU variant: the caller goes through getLlama() instead.
 */
async function loadDirect(gpu: GpuOption, bindingPath: string, compiled: CompiledCpuBackend | undefined): Promise<EngineRuntime | undefined> {
    let binding: LlamaBinding;
    try {
        binding = await bringUpCpuBinding(bindingPath, logger(printLevel()), (b) => {
            // The CPU backend compiled for this machine, when it was linked against this binding's
            // libggml-base.so (ggml's score refuses it on a CPU without its instructions) ...
            if (b.getGpuType() == null && compiled != null && compiled.bindingPath === bindingPath) b.loadBackends(compiled.folder);
            if (b.getGpuType() != null) return;
            // ... else the prebuilt one this CPU got last time, else the scan of every variant (then pinned).
            const pinned = pinnedBackendFolder(bindingPath);
            if (pinned != null) b.loadBackends(pinned);
            if (b.getGpuType() == null) {
                b.loadBackends(path.dirname(bindingPath));
                pinBackends(bindingPath, {replace: pinned != null});
            }
        });
    } catch {
        // Nothing lost: the record is dropped and the caller brings llama.cpp up through getLlama(), which reports its own errors.
        forgetCpuRuntime(gpu);
        return undefined;
    }
    directBinding = binding;
    const {addon, addonPath} = loadSelfragAddon("cpu", path.dirname(bindingPath));
    return {addon, variant: "cpu", addonPath, mathCores: Math.floor(directBinding.getMathCores()), via: "direct"};
}

/** node-llama-cpp's Llama for a runtime that came up without it: getLlama() for the variant already loaded (its binary is shared). */
async function ensureLlama(runtime: EngineRuntime): Promise<EngineRuntime> {
    if (runtime.llama != null) return runtime;
    withLlama ??= getLlamaFor(runtime.variant === "cpu" ? false : runtime.variant as GpuOption, logger(printLevel()));
    withLlama.catch(() => {
        withLlama = undefined;
    });
    runtime.llama = await withLlama;
    return runtime;
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

function printLevel(): LlamaLogLevel {
    return (process.env.SELFRAG_LOG_LEVEL ?? "disabled") as LlamaLogLevel;
}

/** selfrag's llama.cpp log sink: keeps the recent warnings and errors, prints up to SELFRAG_LOG_LEVEL. */
function logger(print: LlamaLogLevel) {
    return (level: LlamaLogLevel, message: string) => {
        const rank = levelOrder.indexOf(level);
        if (rank >= 1 && rank <= 3) {
            recentLog.push(message.trim());
            if (recentLog.length > 50) recentLog.shift();
        }
        if (rank >= 1 && rank <= levelOrder.indexOf(print)) process.stderr.write(`[llama.cpp] ${message.trimEnd()}\n`);
    };
}

async function doLoad(gpu: GpuOption, compiled: CompiledCpuBackend | undefined): Promise<EngineRuntime> {
    // The compiled CPU backend goes in first: node-llama-cpp then finds a CPU backend loaded and
    // adds none of its own.
    if (compiled != null) preloadBackends(compiled.bindingPath, compiled.folder);
    const llama = await getLlamaFor(gpu, logger(printLevel()));
    const variant = llama.gpu === false ? "cpu" : llama.gpu;
    const {addon, addonPath} = loadSelfragAddon(variant);
    if (variant === "cpu") recordCpuRuntime(gpu);
    return {addon, llama, variant, addonPath, mathCores: llama.cpuMathCores, via: "node-llama-cpp"};
}

/** The selfrag addon built for `variant` (the llama.cpp already loaded); one error naming every file tried. */
function loadSelfragAddon(variant: string, libDir?: string): {addon: NativeAddon, addonPath: string} {
    const candidates = addonCandidates(variant, libDir);
    const failures: string[] = [];
    for (const candidate of candidates) {
        try {
            const addon = requireNative(candidate) as NativeAddon;
            addon.setErrorClass(SelfRagError);
            return {addon, addonPath: candidate};
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
    return mappedFiles().map(llamaLibrarySoname).find((name) => name != null);
}

/** The builds for the llama.cpp loaded: from `libDir` when known (a direct runtime), else by the libllama mapped. */
function addonCandidates(variant: string, libDir?: string): string[] {
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
    const fromDir = libDir == null ? [] : manifest.builds.filter((b) => path.resolve(b.libDir) === path.resolve(libDir));
    const soname = fromDir.length > 0 ? undefined : loadedLlamaSoname();
    const matching = fromDir.length > 0 ? fromDir : manifest.builds.filter((b) => soname != null ? b.soname === soname : b.variant === variant);
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
