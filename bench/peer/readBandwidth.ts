// The read-bandwidth probe (readBandwidth.c), compiled once into bench/.cache with the system cc
// (rebuilt when its source changes) and run: GB/s of reading a 1 GiB buffer with `threads` threads;
// with the weight bytes a decode step reads, the bandwidth ceiling of generation.
import {spawnSync} from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import {readGgufLayoutSync} from "../../lib/gguf/GgufReader.js";
import {benchCacheDir, repoRoot} from "./repoRoot.js";

function ensureProbe(): string {
    const source = path.join(repoRoot(), "bench", "peer", "readBandwidth.c");
    const key = crypto.createHash("sha256").update(fs.readFileSync(source)).digest("hex").slice(0, 16);
    const binary = path.join(benchCacheDir(), "read-bandwidth", `read-bandwidth-${key}`);
    if (fs.existsSync(binary)) return binary;
    fs.mkdirSync(path.dirname(binary), {recursive: true});
    const partial = `${binary}.${process.pid}.partial`;
    // -march=native: the probe measures this machine, with the widest loads it has.
    const args = ["-O3", "-march=native", "-pthread", source, "-o", partial];
    const result = spawnSync("cc", args, {encoding: "utf8"});
    if (result.status !== 0) {
        fs.rmSync(partial, {force: true});
        throw new Error(`cc ${args.join(" ")} failed (${result.error?.message ?? `exit ${result.status}`}):\n${result.stderr}`);
    }
    fs.renameSync(partial, binary);
    return binary;
}

/** Best of 5 passes over 1 GiB, in GB/s (10^9 bytes per second). */
export function measureReadBandwidth(threads: number): number {
    const result = spawnSync(ensureProbe(), [String(threads), "1024", "5"], {encoding: "utf8"});
    const value = Number(result.stdout.trim());
    if (result.status !== 0 || !Number.isFinite(value) || value <= 0) {
        throw new Error(`read-bandwidth probe failed (${result.status}): ${result.stdout}${result.stderr}`);
    }
    return value;
}

/** Weight bytes one decode step reads: every tensor but the token embedding (one row per token), unless the output layer is tied to it. */
export function weightBytesPerStep(modelFile: string): {bytes: number, tied: boolean} {
    const fd = fs.openSync(modelFile, "r");
    try {
        const layout = readGgufLayoutSync(fd, fs.fstatSync(fd).size);
        const tied = !layout.tensors.some((t) => t.name === "output.weight");
        const bytes = layout.tensors.filter((t) => tied || t.name !== "token_embd.weight").reduce((n, t) => n + t.bytes, 0);
        return {bytes, tied};
    } finally {
        fs.closeSync(fd);
    }
}
