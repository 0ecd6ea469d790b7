// The adapter to node-llama-cpp: everything selfrag relies on that node-llama-cpp does not promise.
// selfrag pins node-llama-cpp to one exact version (NODE_LLAMA_CPP_VERSION) because its addon links
// node-llama-cpp's private llama.cpp binaries; this file is the rest of that contract, so an upgrade
// reads and re-checks this one file (and test/27.model.node-llama-cpp-adapter):
//   - the binding: the exports of its llama-addon.node that bring llama.cpp up (LlamaBinding), and
//     the order its Llama constructor calls them in (bringUpCpuBinding);
//   - its log plumbing: the addon's log level numbers, its Llama's joining of log pieces into lines
//     and its list of llama.cpp warnings reported at a lower level (lineLogger), the setLogger trap;
//   - where its binaries live (@node-llama-cpp/<platform>/bins/<dir>/llama-addon.node, next to
//     libllama, libggml-base and the ggml backends) and which files its GPU detection looks at;
//   - the one public call, getLlama(), with the options selfrag gives it, and the execArgv its binary
//     test's child process inherits (forkableExecArgv);
//   - which binary getLlama() would load for the CPU, asked of its own (private) selection functions.
import {createRequire} from "node:module";
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";
import type {Llama, LlamaLogLevel} from "node-llama-cpp";
import {SelfRagError} from "../errors.js";

/** The node-llama-cpp release this adapter was written against (package.json pins it exactly). */
export const NODE_LLAMA_CPP_VERSION = "3.22.1";

const requireNative = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Where node-llama-cpp and its binaries are

let resolvedDir: string | undefined;

/**
 * node-llama-cpp's package folder as this install resolves it (the same resolution as
 * `import("node-llama-cpp")` here), real path: its binaries are compared with real mapped paths.
 */
export function nodeLlamaCppDir(): string {
    // "node-llama-cpp" resolves to <dir>/dist/index.js ("exports" hides package.json).
    resolvedDir ??= fs.realpathSync(path.resolve(path.dirname(requireNative.resolve("node-llama-cpp")), ".."));
    return resolvedDir;
}

/**
 * The node_modules folder this install takes node-llama-cpp and its binary packages from: every
 * binding this install may load (a prebuilt variant, a local build) lies under it.
 */
export function installNodeModules(): string {
    return path.dirname(nodeLlamaCppDir());
}

/** Whether `file` (a binding, a libggml-base.so) is one of this install's node-llama-cpp files. */
export function inThisInstall(file: string): boolean {
    let real: string;
    try {
        real = fs.realpathSync(file);
    } catch (error) {
        // A file that is not there belongs to no install; any other failure is worth seeing.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
        throw error;
    }
    return real.startsWith(installNodeModules() + path.sep);
}

/**
 * The @node-llama-cpp variant packages installed next to a prebuilt binding
 * (…/@node-llama-cpp/<pkg>/bins/<dir>/llama-addon.node): installing a GPU one changes what
 * getLlama({gpu: "auto"}) picks. [] for a binding elsewhere (a local build).
 */
export function variantPackagesBeside(bindingPath: string): string[] {
    const scope = path.resolve(bindingPath, "..", "..", "..", "..");
    return path.basename(scope) === "@node-llama-cpp" ? fs.readdirSync(scope).sort() : [];
}

/** Libraries node-llama-cpp's GPU detection looks for (detectAvailableComputeLayers.ts), and the folders it looks in. */
export const GPU_DETECTION = {
    libraries: ["libnvidia-ml.so", "libnvidia-ml.so.1", "libcuda.so", "libcuda.so.1", "libcudart.so", "libcudart.so.12",
        "libcudart.so.13", "libcublas.so", "libcublas.so.12", "libcublas.so.13", "libvulkan.so", "libvulkan.so.1"],
    folders: (): string[] => [...(process.env.LD_LIBRARY_PATH ?? "").split(":"), process.env.CUDA_PATH, "/usr/lib", "/usr/lib64",
        "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
        .filter((d): d is string => d != null && d !== ""),
    devices: ["/dev/nvidiactl", "/dev/nvidia0", "/dev/dri", "/dev/kfd", "/dev/dxg"],
    env: (): (string | null)[] => [process.env.CUDA_PATH ?? null, process.env.LD_LIBRARY_PATH ?? null]
} as const;

// ---------------------------------------------------------------------------------------------
// The binding

/** The part of node-llama-cpp's binding (its llama-addon.node, AddonTypes.ts) that bringing up llama.cpp uses. */
export interface LlamaBinding {
    /** true when this binary was already brought up in this process (by another require of it). */
    markLoaded(): boolean;
    /**
     * The JavaScript log callback. Trap: calling it a second time on the same binary (a second
     * require, as getLlama() does after a direct load or a preload) drops the callback once the
     * first one's finalizer runs, late; so a preload sets no logger, and a runtime keeps the first.
     */
    setLogger(logger: (level: number, message: string) => void): void;
    setLoggerLogLevel(level: number): void;
    /** ggml_backend_load_all_from_path(folder), or ggml's default places without one. */
    loadBackends(forceLoadLibrariesSearchPath?: string): void;
    /** undefined while no backend is loaded, false for the CPU. */
    getGpuType(): "cuda" | "vulkan" | "metal" | false | undefined;
    ensureGpuDeviceIsSupported(): void;
    getMathCores(): number;
    /** llama_backend_init on a worker thread. */
    init(): Promise<void>;
}

/** The binding at `bindingPath` (a second require of one file shares its native state: one llama.cpp). */
export function requireBinding(bindingPath: string): LlamaBinding {
    return requireNative(bindingPath) as LlamaBinding;
}

/**
 * node-llama-cpp's CPU binary brought up as its Llama constructor does: our logger (whole lines,
 * warnings and worse), its default backends, then `loadCpuBackend` (which chooses the ggml CPU
 * backend: compiled, pinned or the binary's folder), then llama_backend_init. Throws when the
 * binary does not come up as the CPU variant.
 */
export async function bringUpCpuBinding(bindingPath: string, sink: LlamaLogSink,
    loadCpuBackend: (binding: LlamaBinding) => void): Promise<LlamaBinding> {
    const binding = requireBinding(bindingPath);
    binding.markLoaded();
    binding.setLogger(lineLogger(sink));
    binding.setLoggerLogLevel(ADDON_LOG_LEVEL.warn);
    binding.loadBackends();
    loadCpuBackend(binding);
    const type = binding.getGpuType();
    if (type !== false) throw new Error(`${bindingPath} came up as ${String(type)}, not the CPU`);
    binding.ensureGpuDeviceIsSupported();
    await binding.init();
    return binding;
}

/**
 * Loads the ggml backends in `folder` into the binding at `bindingPath` before getLlama() loads
 * that binding: its Llama then finds a CPU backend registered and adds none of its own (the
 * registry lives in the binding's libggml-base, shared by every require of it). No logger (the
 * setLogger trap above: getLlama() sets its own next). false when that failed.
 */
export function preloadBackends(bindingPath: string, folder: string): boolean {
    try {
        const binding = requireBinding(bindingPath);
        binding.setLoggerLogLevel(ADDON_LOG_LEVEL.warn);
        binding.loadBackends(folder);
        return true;
    } catch {
        // Nothing lost: getLlama() then loads its prebuilt backend as usual, and the caller reports the backend mapped.
        return false;
    }
}

// ---------------------------------------------------------------------------------------------
// Logging

/** node-llama-cpp's log levels by the number its binding reports (Llama.ts LlamaLogLevelToAddonLogLevel). */
const ADDON_LEVELS = ["disabled", "fatal", "error", "warn", "info", "log", "debug"] as LlamaLogLevel[];
/** The binding's numbers for the levels selfrag sets. */
export const ADDON_LOG_LEVEL = {warn: 3} as const;

export type LlamaLogSink = (level: LlamaLogLevel, message: string) => void;

/** llama.cpp warnings node-llama-cpp reports at a lower level (Llama.ts getTransformedLogLevel, the CPU ones). */
export const DOWNGRADED: readonly [prefix: string, suffix: string, to: LlamaLogLevel][] = [
    ["", "the full capacity of the model will not be utilized", "info" as LlamaLogLevel],
    ["make_cpu_buft_list: disabling extra buffer types", "", "info" as LlamaLogLevel],
    ["llama_context: non-unified KV cache requires ggml_set_rows() - forcing unified KV cache", "", "info" as LlamaLogLevel],
    ["llama_kv_cache_unified: LLAMA_SET_ROWS=0, using old ggml_cpy() method for backwards compatibility", "", "info" as LlamaLogLevel],
    ["init: embeddings required but some input tokens were not marked as outputs -> overriding", "", "info" as LlamaLogLevel],
    ["load: special_eog_ids contains both '<|return|>' and '<|call|>' tokens, removing '<|end|>' token from EOG list", "", "info" as LlamaLogLevel],
    ["llama_init_from_model: model default pooling_type is [0], but [-1] was specified", "", "info" as LlamaLogLevel],
    ["llama_model_loader: direct I/O is enabled, disabling mmap", "", "info" as LlamaLogLevel],
    ["llama_model_loader: direct I/O is not available, using mmap", "", "info" as LlamaLogLevel],
    ["str: cannot properly format tensor name ", "", "info" as LlamaLogLevel],
    ["llama_kv_cache: the V embeddings have different sizes across layers and FA is not enabled - padding V cache to", "", "info" as LlamaLogLevel],
    ["llama_adapter_lora_init_impl: lora for '", "' cannot use buft 'CPU_REPACK', fallback to CPU", "info" as LlamaLogLevel]
];

/**
 * The binding's raw log callback turned into whole lines at node-llama-cpp's levels, as its Llama
 * does (llama.cpp logs in pieces; a line is complete at its newline or at the end of the tick), for
 * `sink`, which sees warnings and worse only (the level selfrag asks node-llama-cpp for).
 */
export function lineLogger(sink: LlamaLogSink): (level: number, message: string) => void {
    let pending = "";
    let pendingLevel = 0;
    let queued = 0;
    const emit = (level: number, line: string) => {
        let name = ADDON_LEVELS[level] ?? ("fatal" as LlamaLogLevel);
        if (name === "warn") {
            const rule = DOWNGRADED.find(([prefix, suffix]) => line.startsWith(prefix) && line.endsWith(suffix));
            if (rule != null) name = rule[2];
        }
        const rank = ADDON_LEVELS.indexOf(name);
        if (rank >= 1 && rank <= ADDON_LOG_LEVEL.warn) sink(name, line);
    };
    const flush = () => {
        if (--queued !== 0 || pending === "") return;
        emit(pendingLevel, pending);
        pending = "";
    };
    return (level, message) => {
        if (pending !== "" && pendingLevel !== level) {
            emit(pendingLevel, pending);
            pending = "";
        }
        const text = pending + message;
        const cut = text.lastIndexOf("\n");
        const complete = cut < 0 ? text : text.slice(0, cut);
        pending = cut < 0 ? "" : text.slice(cut + 1);
        pendingLevel = level;
        if (complete !== "") emit(level, complete);
        if (pending !== "") {
            queued++;
            queueMicrotask(flush);
        }
    };
}

// ---------------------------------------------------------------------------------------------
// The binary test's child process

/**
 * node-llama-cpp tests a binary (testBindingBinary) by forking its own testBindingBinary.js with
 * child_process.fork's default execArgv, which is this process's process.execArgv. In a process
 * started with code rather than a script file (`node --input-type=module -e '...'`, `node -p`)
 * that holds the code itself: the child runs the caller's code again instead of the test file,
 * never reports "ready", and getLlama() fails ("Binding binary test failed to run a test
 * process") with NoBinaryFoundError. The flags that carry or qualify such code are the ones
 * dropped (`--input-type` is refused next to a file); every other flag (--max-old-space-size,
 * --require, --import, ...) is kept. Process-wide while `body` runs: other forks in that window
 * get the same, runnable, flags.
 */
export const EVAL_FLAGS = {
    /** Flags followed by their value as the next argument. */
    withValue: ["-e", "--eval", "-p", "--print", "-pe", "--input-type"],
    /** Flags that stand alone. */
    alone: ["-i", "--interactive"],
    /** Flags with their value after "=". */
    prefixes: ["--eval=", "--print=", "--input-type="]
} as const;

/** process.execArgv without the flags of code given on the command line (EVAL_FLAGS). */
export function forkableExecArgv(execArgv: readonly string[]): string[] {
    const kept: string[] = [];
    for (let i = 0; i < execArgv.length; i++) {
        const arg = execArgv[i];
        if ((EVAL_FLAGS.withValue as readonly string[]).includes(arg)) {
            i++; // its value
            continue;
        }
        if ((EVAL_FLAGS.alone as readonly string[]).includes(arg) || EVAL_FLAGS.prefixes.some((p) => arg.startsWith(p))) continue;
        kept.push(arg);
    }
    return kept;
}

async function withForkableExecArgv<T>(body: () => Promise<T>): Promise<T> {
    const original = process.execArgv;
    const forkable = forkableExecArgv(original);
    if (forkable.length === original.length) return body();
    process.execArgv = forkable;
    try {
        return await body();
    } finally {
        process.execArgv = original;
    }
}

// ---------------------------------------------------------------------------------------------
// getLlama()

export type LlamaGpu = "auto" | false | "cuda" | "vulkan" | "metal";

/**
 * node-llama-cpp's getLlama() as selfrag uses it: never builds or downloads, logs warnings and
 * worse to `sink`, no progress output. Errors arrive as ADDON_LOAD_FAILED.
 */
export async function getLlamaFor(gpu: LlamaGpu, sink: LlamaLogSink): Promise<Llama> {
    try {
        const {getLlama} = await import("node-llama-cpp");
        return await withForkableExecArgv(() =>
            getLlama({gpu, build: "never", logLevel: "warn" as LlamaLogLevel, logger: sink, progressLogs: false, skipDownload: true}));
    } catch (error) {
        throw new SelfRagError(`node-llama-cpp could not load llama.cpp (gpu=${String(gpu)}): ${(error as Error).message}`,
            "ADDON_LOAD_FAILED", {cause: error});
    }
}

// ---------------------------------------------------------------------------------------------
// Which CPU binary getLlama() would load, known in advance

/** One of node-llama-cpp's own (unexported) modules, by its file in dist/: the same module instance getLlama() uses. */
function internal<T>(file: string): Promise<T> {
    return import(pathToFileURL(path.join(nodeLlamaCppDir(), "dist", ...file.split("/"))).href) as Promise<T>;
}

interface BuildOptions {
    customCmakeOptions: Map<string, string>;
    progressLogs: boolean;
    platform: string;
    platformInfo: unknown;
    arch: string;
    gpu: false;
    llamaCpp: {repo: string, release: string};
}

/**
 * The CPU binding getLlama({gpu, build: "never"}) would load on this machine, found with
 * node-llama-cpp's own selection functions in the order its loadExistingLlamaBinary() tries them,
 * or undefined when that cannot be told without loading or testing something:
 *   - gpu "auto" must come down to the CPU alone (its GPU detection lists no GPU to try first; a
 *     GPU binary that would be tried first is only ruled out by its test in a child process);
 *   - no local build of node-llama-cpp for these options (it is tried, and tested, before the
 *     prebuilt binary; whether it passes its test decides, so that case is not foretold);
 *   - prebuilt binaries usable (glibc found, the llama.cpp release the prebuilt one was built from).
 * The answer still needs the binary test getLlama() would run (bindingPassesTest) before the
 * binary is loaded into this process. Reads files only; never loads a binary.
 */
export async function cpuBindingGetLlamaWouldLoad(gpu: "auto" | false): Promise<string | undefined> {
    if (process.platform !== "linux") return undefined;
    let modules;
    try {
        modules = await Promise.all([
            internal<{getPlatform(): string}>("bindings/utils/getPlatform.js"),
            internal<{getBestComputeLayersAvailable(): Promise<(string | false)[]>}>("bindings/utils/getBestComputeLayersAvailable.js"),
            internal<{getCanUsePrebuiltBinaries(): Promise<boolean>}>("bindings/utils/getCanUsePrebuiltBinaries.js"),
            internal<{detectGlibc(options: {platform: string}): Promise<boolean>}>("bindings/utils/detectGlibc.js"),
            internal<{getPlatformInfo(): Promise<unknown>}>("bindings/utils/getPlatformInfo.js"),
            internal<{resolveCustomCmakeOptions(options: object): Map<string, string>}>("bindings/utils/resolveCustomCmakeOptions.js"),
            internal<{getBuildFolderNameForBuildOptions(options: BuildOptions): Promise<{withCustomCmakeOptions: string, withoutCustomCmakeOptions: string}>}>(
                "bindings/utils/getBuildFolderNameForBuildOptions.js"),
            internal<{getLocalBuildBinaryPath(folder: string): Promise<string | null>,
                getPrebuiltBinaryPath(options: BuildOptions, folder: string): Promise<{binaryPath: string} | null>}>("bindings/utils/compileLLamaCpp.js"),
            internal<{builtinLlamaCppGitHubRepo: string}>("config.js"),
            internal<{builtinLlamaCppRelease: string}>("bindings/utils/binariesGithubRelease.js")
        ]);
    } catch {
        // Nothing lost: a node-llama-cpp whose internals moved is not foretold, and getLlama() decides as usual.
        return undefined;
    }
    const [{getPlatform}, {getBestComputeLayersAvailable}, {getCanUsePrebuiltBinaries}, {detectGlibc}, {getPlatformInfo},
        {resolveCustomCmakeOptions}, {getBuildFolderNameForBuildOptions}, {getLocalBuildBinaryPath, getPrebuiltBinaryPath},
        {builtinLlamaCppGitHubRepo}, {builtinLlamaCppRelease}] = modules;
    const platform = getPlatform();
    if (gpu === "auto") {
        const layers = await getBestComputeLayersAvailable();
        if (layers.length !== 1 || layers[0] !== false) return undefined;
    }
    if (!(await getCanUsePrebuiltBinaries()) || !(await detectGlibc({platform}))) return undefined;
    // getLlamaForOptions' buildOptions for the CPU, selfrag passing no cmake options (the environment may add some).
    const buildOptions: BuildOptions = {customCmakeOptions: resolveCustomCmakeOptions({}), progressLogs: false, platform,
        platformInfo: await getPlatformInfo(), arch: process.arch, gpu: false,
        llamaCpp: {repo: builtinLlamaCppGitHubRepo, release: builtinLlamaCppRelease}};
    const folder = await getBuildFolderNameForBuildOptions(buildOptions);
    if (await getLocalBuildBinaryPath(folder.withCustomCmakeOptions) != null) return undefined;
    const prebuilt = await getPrebuiltBinaryPath(buildOptions, folder.withoutCustomCmakeOptions);
    return prebuilt == null ? undefined : fs.realpathSync(prebuilt.binaryPath);
}

/**
 * node-llama-cpp's own test of a CPU binary (testBindingBinary: load it and bring llama.cpp up in
 * a child process), which getLlama() runs on Linux before it trusts a binary. false when it fails
 * or cannot be run.
 */
export async function bindingPassesTest(bindingPath: string): Promise<boolean> {
    try {
        const {testBindingBinary} = await internal<{testBindingBinary(binding: string, ext: string | undefined, gpu: false): Promise<boolean>}>(
            "bindings/utils/testBindingBinary.js");
        return await withForkableExecArgv(() => testBindingBinary(bindingPath, undefined, false));
    } catch {
        // Nothing lost: an untested binary is treated as one that failed, and getLlama() decides as usual.
        return false;
    }
}
