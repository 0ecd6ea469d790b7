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
// Records and pins are per install (keyed by the package root, and the pin by the binding too): a
// record names one install's binding, which another install must never load.
//
// The ggml backends are pinned the same way. Loading them from the binary's folder
// (ggml_backend_load_all_from_path) opens every CPU variant there (15 on x64) to ask each whether
// this CPU runs it, then keeps the best: ~15 ms. After such a scan, the libraries it kept are
// linked into a folder of their own, keyed by this CPU's identity (/proc/cpuinfo) and the binary;
// later processes load from that folder, where the scan finds only them. ggml still asks the
// library whether this CPU runs it, and refuses it if not; then the full scan runs, as before.
// Everything about node-llama-cpp itself (its binding, its detection) is in nodeLlamaCpp.ts.
import fs from "node:fs";
import path from "node:path";
import {cacheDir, packageRoot} from "../paths.js";
import {GPU_DETECTION, inThisInstall, variantPackagesBeside} from "./nodeLlamaCpp.js";
import {cpuBackendVariant, isGgmlBackend, isLlamaBinding, mappedFiles} from "./processMaps.js";

interface RuntimeRecord {
    format: 2;
    /** The install this record belongs to (the selfrag package root): no other install reads it. */
    packageRoot: string;
    /** The gpu option asked for ("auto" or "false"). */
    gpu: string;
    variant: "cpu";
    /** node-llama-cpp's binding getLlama() loaded (or, in a first process, would load) and tested. */
    bindingPath: string;
    fingerprint: string;
    recordedAt: string;
}

const FORMAT = 2;

function enabled(gpu: unknown): boolean {
    return cacheEnabled() && (gpu === false || gpu === "auto");
}

/** The record is on (Linux, SELFRAG_RUNTIME_CACHE not "0"): also what allows a first process to act on it. */
export function cacheEnabled(): boolean {
    return process.platform === "linux" && process.env.SELFRAG_RUNTIME_CACHE !== "0";
}

/**
 * One record per install and gpu option: two installs on a machine (two clones, two projects
 * depending on selfrag) share SELFRAG_HOME but never a record, so neither switches the other's
 * backend or makes it load its binaries.
 */
function recordFile(gpu: unknown): string {
    return path.join(cacheDir(), "runtime", `llama-${String(gpu)}-${hash(packageRoot)}.json`);
}

/**
 * What "auto" depends on: GPU device nodes, the GPU libraries node-llama-cpp looks for, and the
 * @node-llama-cpp variant packages installed next to the binding.
 */
function gpuFingerprint(bindingPath: string): unknown {
    // With their modification times: a driver upgraded in place (which may make a GPU binary pass
    // node-llama-cpp's test where it failed) changes the fingerprint too.
    // A folder that is not there holds none of them: one stat instead of one per library.
    const libraries = GPU_DETECTION.folders().filter((dir) => fs.statSync(dir, {throwIfNoEntry: false})?.isDirectory() ?? false)
        .flatMap((dir) => GPU_DETECTION.libraries.map((lib) => path.join(dir, lib)))
        .map((file) => [file, fs.statSync(file, {throwIfNoEntry: false})?.mtimeMs] as const).filter(([, mtime]) => mtime != null);
    const devices = GPU_DETECTION.devices.filter((d) => fs.existsSync(d));
    return {libraries, devices, variants: variantPackagesBeside(bindingPath), env: GPU_DETECTION.env()};
}

/** The fingerprint of a binding for this gpu option, or undefined when the binding is gone. */
function fingerprint(gpu: unknown, bindingPath: string): string | undefined {
    const stat = fs.statSync(bindingPath, {throwIfNoEntry: false});
    if (stat == null) return undefined;
    return JSON.stringify({
        node: process.version, modules: process.versions.modules, napi: process.versions.napi, arch: process.arch,
        binding: [bindingPath, stat.size, stat.mtimeMs, stat.ino], gpu: gpu === "auto" ? gpuFingerprint(bindingPath) : null
    });
}

/**
 * The binding a still-valid record of this install names for this gpu option, or undefined (no
 * record, stale, disabled, or naming a binding outside this install's node_modules).
 */
export function recordedCpuBinding(gpu: unknown): string | undefined {
    if (!enabled(gpu)) return undefined;
    let record: RuntimeRecord;
    try {
        record = JSON.parse(fs.readFileSync(recordFile(gpu), "utf8")) as RuntimeRecord;
    } catch {
        // Nothing lost: no record, or one cut or garbled, means going through getLlama() (which writes it again).
        return undefined;
    }
    if (record.format !== FORMAT || record.variant !== "cpu" || typeof record.bindingPath !== "string") return undefined;
    if (record.packageRoot !== packageRoot || !inThisInstall(record.bindingPath)) return undefined;
    return fingerprint(gpu, record.bindingPath) === record.fingerprint ? record.bindingPath : undefined;
}

/**
 * After llama.cpp came up on the CPU: records the binding it runs on (Linux, the one mapped), when
 * it is this install's, and pins the backends the scan kept. Never throws.
 */
export function recordCpuRuntime(gpu: unknown): void {
    if (!enabled(gpu)) return;
    try {
        const bindings = mappedFiles().filter(isLlamaBinding);
        if (bindings.length !== 1 || !inThisInstall(bindings[0])) return;
        const print = fingerprint(gpu, bindings[0]);
        if (print == null) return;
        const record: RuntimeRecord = {format: FORMAT, packageRoot, gpu: String(gpu), variant: "cpu", bindingPath: bindings[0],
            fingerprint: print, recordedAt: new Date().toISOString()};
        const file = recordFile(gpu);
        fs.mkdirSync(path.dirname(file), {recursive: true});
        const partial = `${file}.${process.pid}.partial`;
        fs.writeFileSync(partial, JSON.stringify(record, null, 2) + "\n");
        fs.renameSync(partial, file);
        pinBackends(bindings[0]);
    } catch {
        // Nothing lost: an unwritable cache only costs the next process the full getLlama().
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
    } catch (error) {
        // No /proc/cpuinfo (not Linux): this CPU cannot be told, so nothing is pinned.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
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

/**
 * The pin folder for this CPU, this install and this binary (its backends sit next to it), or
 * undefined when this CPU cannot be told.
 */
function pinFolder(bindingPath: string): string | undefined {
    const identity = cpuIdentity();
    if (identity == null) return undefined;
    const stat = fs.statSync(bindingPath, {throwIfNoEntry: false});
    if (stat == null) return undefined;
    return path.join(cacheDir(), "runtime", `ggml-backends-${hash(JSON.stringify([identity, packageRoot, bindingPath, stat.size, stat.mtimeMs, stat.ino]))}`);
}

/**
 * The folder holding the ggml backends a full scan of the binary's folder picked on this CPU, to
 * load instead of that folder (ggml_backend_load_all_from_path), or undefined (not pinned yet).
 */
export function pinnedBackendFolder(bindingPath: string): string | undefined {
    if (!cacheEnabled()) return undefined;
    const folder = pinFolder(bindingPath);
    return folder != null && fs.existsSync(folder) ? folder : undefined;
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
        const kept = mappedFiles().filter((file) => isGgmlBackend(file) && path.dirname(file) === dir);
        if (!kept.some((file) => cpuBackendVariant(file) != null)) return;
        fs.mkdirSync(path.dirname(folder), {recursive: true});
        // Built aside and renamed into place: a process never sees a half-made folder.
        partial = `${folder}.${process.pid}.partial`;
        fs.rmSync(partial, {recursive: true, force: true});
        fs.mkdirSync(partial);
        for (const file of kept) fs.symlinkSync(file, path.join(partial, path.basename(file)));
        fs.renameSync(partial, folder);
        partial = undefined;
    } catch {
        // Nothing lost: without a pin the next process scans the binary's folder, as before the pin.
    } finally {
        if (partial != null) fs.rmSync(partial, {recursive: true, force: true});
    }
}

/** Drops the record (it named a binary that failed to come up). Never throws. */
export function forgetCpuRuntime(gpu: unknown): void {
    try {
        fs.rmSync(recordFile(gpu), {force: true});
    } catch {
        // Nothing lost: a record that cannot be removed fails its check again and the caller goes through getLlama().
    }
}
