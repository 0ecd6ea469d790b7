// What lets a process skip node-llama-cpp's start-up when it only needs llama.cpp on the CPU.
//
// node-llama-cpp's getLlama() costs about a second before any model work: importing its
// JavaScript (hundreds of modules), probing for GPUs, and on Linux testing its prebuilt binary in
// a child process before trusting it. It does all of that again in every process. selfrag's engine
// needs none of node-llama-cpp's JavaScript, only llama.cpp loaded with its backends, so once
// getLlama() has loaded the CPU binary on this machine (test passed), a small record says so; later
// processes asking for the same gpu option load that binary directly (its backends, its logger,
// llama_backend_init, as node-llama-cpp's Llama constructor does) while the record's fingerprint
// still matches: same binary file, same Node, and for gpu "auto" the same GPU-relevant devices and
// libraries. A GPU variant is never recorded (its probing and test are what pick and vet it).
// SELFRAG_RUNTIME_CACHE=0 turns the record off (every process goes through getLlama()).
//
// The ggml backends are pinned the same way. Loading them from the binary's folder
// (ggml_backend_load_all_from_path) opens every CPU variant there (15 on x64) to ask each whether
// this CPU runs it, then keeps the best: ~15 ms. After such a scan, the libraries it kept are
// linked into a folder of their own, keyed by this CPU's identity (/proc/cpuinfo) and the binary;
// later processes load from that folder, where the scan finds only them. ggml still asks the
// library whether this CPU runs it, and refuses it if not; then the full scan runs, as before.
import fs from "node:fs";
import path from "node:path";
import type {LlamaLogLevel} from "node-llama-cpp";
import {cacheDir} from "../paths.js";

/** The part of node-llama-cpp's binding (its llama-addon.node) that bringing up llama.cpp uses. */
export interface LlamaBinding {
    markLoaded(): boolean;
    setLogger(logger: (level: number, message: string) => void): void;
    setLoggerLogLevel(level: number): void;
    loadBackends(forceLoadLibrariesSearchPath?: string): void;
    getGpuType(): "cuda" | "vulkan" | "metal" | false | undefined;
    ensureGpuDeviceIsSupported(): void;
    getMathCores(): number;
    init(): Promise<void>;
}

interface RuntimeRecord {
    format: 1;
    /** The gpu option asked for ("auto" or "false"). */
    gpu: string;
    variant: "cpu";
    /** node-llama-cpp's binding that getLlama() loaded and tested. */
    bindingPath: string;
    fingerprint: string;
    recordedAt: string;
}

const FORMAT = 1;

function enabled(gpu: unknown): boolean {
    return cacheEnabled() && (gpu === false || gpu === "auto");
}

function cacheEnabled(): boolean {
    return process.platform === "linux" && process.env.SELFRAG_RUNTIME_CACHE !== "0";
}

function recordFile(gpu: unknown): string {
    return path.join(cacheDir(), "runtime", `llama-${String(gpu)}.json`);
}

/** Libraries node-llama-cpp's GPU detection looks for (detectAvailableComputeLayers.ts), and where. */
const GPU_LIBRARIES = ["libnvidia-ml.so", "libnvidia-ml.so.1", "libcuda.so", "libcuda.so.1", "libcudart.so", "libcudart.so.12",
    "libcudart.so.13", "libcublas.so", "libcublas.so.12", "libcublas.so.13", "libvulkan.so", "libvulkan.so.1"];
const GPU_DEVICES = ["/dev/nvidiactl", "/dev/nvidia0", "/dev/dri", "/dev/kfd", "/dev/dxg"];

/**
 * What "auto" depends on: GPU device nodes, the GPU libraries node-llama-cpp looks for, and the
 * @node-llama-cpp variant packages installed next to the binding (…/@node-llama-cpp/<pkg>/bins/<dir>/llama-addon.node).
 */
function gpuFingerprint(bindingPath: string): unknown {
    const dirs = [...(process.env.LD_LIBRARY_PATH ?? "").split(":"), process.env.CUDA_PATH, "/usr/lib", "/usr/lib64",
        "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
        .filter((d): d is string => d != null && d !== "");
    // With their modification times: a driver upgraded in place (which may make a GPU binary pass
    // node-llama-cpp's test where it failed) changes the fingerprint too.
    // A folder that is not there holds none of them: one stat instead of one per library.
    const libraries = dirs.filter((dir) => fs.statSync(dir, {throwIfNoEntry: false})?.isDirectory() ?? false)
        .flatMap((dir) => GPU_LIBRARIES.map((lib) => path.join(dir, lib)))
        .map((file) => [file, fs.statSync(file, {throwIfNoEntry: false})?.mtimeMs] as const).filter(([, mtime]) => mtime != null);
    const devices = GPU_DEVICES.filter((d) => fs.existsSync(d));
    const scope = path.resolve(bindingPath, "..", "..", "..", "..");
    const variants = path.basename(scope) === "@node-llama-cpp" ? fs.readdirSync(scope).sort() : [];
    return {libraries, devices, variants, env: [process.env.CUDA_PATH ?? null, process.env.LD_LIBRARY_PATH ?? null]};
}

function fingerprint(gpu: unknown, bindingPath: string): string | undefined {
    try {
        const stat = fs.statSync(bindingPath);
        return JSON.stringify({
            node: process.version, modules: process.versions.modules, napi: process.versions.napi, arch: process.arch,
            binding: [bindingPath, stat.size, stat.mtimeMs, stat.ino], gpu: gpu === "auto" ? gpuFingerprint(bindingPath) : null
        });
    } catch {
        return undefined;
    }
}

/** The binding a still-valid record names for this gpu option, or undefined (no record, stale, disabled). */
export function recordedCpuBinding(gpu: unknown): string | undefined {
    if (!enabled(gpu)) return undefined;
    let record: RuntimeRecord;
    try {
        record = JSON.parse(fs.readFileSync(recordFile(gpu), "utf8")) as RuntimeRecord;
    } catch {
        return undefined;
    }
    if (record.format !== FORMAT || record.variant !== "cpu" || typeof record.bindingPath !== "string") return undefined;
    return fingerprint(gpu, record.bindingPath) === record.fingerprint ? record.bindingPath : undefined;
}

/** After getLlama() brought up the CPU variant: records the binding it loaded (Linux, from /proc/self/maps). Never throws. */
export function recordCpuRuntime(gpu: unknown): void {
    if (!enabled(gpu)) return;
    try {
        const bindings = [...new Set(fs.readFileSync("/proc/self/maps", "utf8").split("\n")
            .map((line) => /\s(\/\S*\/llama-addon\.node)$/.exec(line)?.[1]).filter((p): p is string => p != null))];
        if (bindings.length !== 1) return;
        const print = fingerprint(gpu, bindings[0]);
        if (print == null) return;
        const record: RuntimeRecord = {format: FORMAT, gpu: String(gpu), variant: "cpu", bindingPath: bindings[0], fingerprint: print,
            recordedAt: new Date().toISOString()};
        const file = recordFile(gpu);
        fs.mkdirSync(path.dirname(file), {recursive: true});
        const partial = `${file}.${process.pid}.partial`;
        fs.writeFileSync(partial, JSON.stringify(record, null, 2) + "\n");
        fs.renameSync(partial, file);
        pinBackends(bindings[0]);
    } catch {
        // an unwritable cache only costs the next process the full getLlama()
    }
}

/**
 * What makes ggml pick one CPU variant over another (vendor, model, feature flags of the first
 * processor in /proc/cpuinfo; not clock speeds or core numbers), or undefined when none of it is
 * there (no pinning then).
 */
function cpuIdentity(): string | undefined {
    let text: string;
    try {
        // The first processor's block is all that is needed, and all that is read.
        const fd = fs.openSync("/proc/cpuinfo", "r");
        try {
            const buffer = Buffer.alloc(16_384);
            text = buffer.toString("utf8", 0, fs.readSync(fd, buffer, 0, buffer.length, 0));
        } finally {
            fs.closeSync(fd);
        }
    } catch {
        return undefined;
    }
    const keys = new Set(["vendor_id", "cpu family", "model", "model name", "stepping", "flags", "Features", "CPU implementer",
        "CPU architecture", "CPU variant", "CPU part", "CPU revision", "isa", "cpu"]);
    const lines = text.split("\n\n")[0].split("\n").filter((line) => keys.has(line.split(":")[0].trim()));
    return lines.length > 0 ? [process.arch, ...lines.map((l) => l.replace(/\s+/g, " ").trim())].join("\n") : undefined;
}

/** FNV-1a, two 32-bit lanes: a folder name, not a security boundary (node:crypto takes 6-8 ms to import here). */
function hash(text: string): string {
    let a = 0x811c9dc5;
    let b = 0x01000193 ^ text.length;
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        a = Math.imul(a ^ c, 0x01000193);
        b = Math.imul(b ^ c, 0x5bd1e995);
    }
    return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0");
}

/** The pin folder for this CPU and this binary (its backends sit next to it), or undefined when this CPU cannot be told. */
function pinFolder(bindingPath: string): string | undefined {
    const identity = cpuIdentity();
    if (identity == null) return undefined;
    const stat = fs.statSync(bindingPath, {throwIfNoEntry: false});
    if (stat == null) return undefined;
    return path.join(cacheDir(), "runtime", `ggml-backends-${hash(JSON.stringify([identity, bindingPath, stat.size, stat.mtimeMs, stat.ino]))}`);
}

/**
 * The folder holding the ggml backends a full scan of the binary's folder picked on this CPU, to
 * load instead of that folder (ggml_backend_load_all_from_path), or undefined (not pinned yet).
 */
export function pinnedBackendFolder(bindingPath: string): string | undefined {
    if (!cacheEnabled()) return undefined;
    try {
        const folder = pinFolder(bindingPath);
        return folder != null && fs.existsSync(folder) ? folder : undefined;
    } catch {
        return undefined;
    }
}

/**
 * After a full scan of the binary's folder: links the ggml backend libraries it kept loaded (the
 * CPU variant, and any other backend found there) into this CPU's pin folder; `replace` when the
 * pin there gave no CPU backend (its links broken). Never throws.
 */
export function pinBackends(bindingPath: string, options: {replace?: boolean} = {}): void {
    if (!cacheEnabled()) return;
    let partial: string | undefined;
    try {
        const folder = pinFolder(bindingPath);
        if (folder == null) return;
        if (fs.existsSync(folder)) {
            if (!options.replace) return;
            // Moved aside first: a folder cannot be renamed over one that has entries.
            const stale = `${folder}.${process.pid}.stale`;
            fs.renameSync(folder, stale);
            fs.rmSync(stale, {recursive: true, force: true});
        }
        const dir = path.dirname(bindingPath);
        // Mapped now: what the scan kept (the variants it only scored were unloaded again).
        // libggml-base.so is linked, not a backend.
        const kept = [...new Set(fs.readFileSync("/proc/self/maps", "utf8").split("\n")
            .map((line) => /\s(\/\S*\/libggml-[^/\s]+\.so)$/.exec(line)?.[1])
            .filter((file): file is string => file != null && path.dirname(file) === dir && path.basename(file) !== "libggml-base.so"))];
        if (!kept.some((file) => path.basename(file).startsWith("libggml-cpu"))) return;
        fs.mkdirSync(path.dirname(folder), {recursive: true});
        // Built aside and renamed into place: a process never sees a half-made folder.
        partial = `${folder}.${process.pid}.partial`;
        fs.rmSync(partial, {recursive: true, force: true});
        fs.mkdirSync(partial);
        for (const file of kept) fs.symlinkSync(file, path.join(partial, path.basename(file)));
        fs.renameSync(partial, folder);
        partial = undefined;
    } catch {
        // no pin: the next process scans the folder, as without one
    } finally {
        if (partial != null) fs.rmSync(partial, {recursive: true, force: true});
    }
}

/** Drops the record (it named a binary that failed to come up). Never throws. */
export function forgetCpuRuntime(gpu: unknown): void {
    try {
        fs.rmSync(recordFile(gpu), {force: true});
    } catch {
        // nothing to do
    }
}

/** node-llama-cpp's log levels by the number its binding reports (Llama.ts LlamaLogLevelToAddonLogLevel). */
const ADDON_LEVELS = ["disabled", "fatal", "error", "warn", "info", "log", "debug"] as LlamaLogLevel[];
export const ADDON_LOG_LEVEL_WARN = 3;

/** llama.cpp warnings node-llama-cpp reports at a lower level (Llama.ts getTransformedLogLevel, the CPU ones). */
const DOWNGRADED: readonly [prefix: string, suffix: string, to: LlamaLogLevel][] = [
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
export function lineLogger(sink: (level: LlamaLogLevel, message: string) => void): (level: number, message: string) => void {
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
        if (rank >= 1 && rank <= ADDON_LOG_LEVEL_WARN) sink(name, line);
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
