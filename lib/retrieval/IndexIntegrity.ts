// An index's files checked against the sizes and SHA-256 checksums its build recorded in the
// manifest, before any native library reads them. Why: USearch trusts the HNSW graph it loads or
// views, so a byte flipped in the graph can make a search read out of bounds and kill the process
// (SIGSEGV); SQLite, the idf table and the row counts have checks of their own, but those catch
// damage only where they look. A checksum catches any changed byte.
//
// Cost: SHA-256 streamed from the page cache runs at about 700 MB/s here, so hashing a
// Wikipedia-scale index (tens of GB) at every open would take a minute or more. By default
// ("auto") the files are hashed only when together they are under AUTO_VERIFY_MAX_BYTES; their
// sizes are compared always (one stat each).
import fs from "node:fs";
import path from "node:path";
import {SelfRagError} from "../errors.js";
import {digestFile, type FileDigest} from "./fileDigest.js";
import {INDEX_DATA_FILES, INDEX_FILES, type IndexDataFile, type IndexManifest} from "./IndexManifest.js";

/**
 * When opening an index hashes its files: "auto" when they add up to less than
 * AUTO_VERIFY_MAX_BYTES, "always", or "never" (sizes only).
 */
export type VerifyPolicy = "auto" | "always" | "never";
export const VERIFY_POLICIES: readonly VerifyPolicy[] = ["auto", "always", "never"];

/** 2 GiB: about 3 s of hashing at the speed measured here; larger indexes are hashed by `selfrag index verify`. */
export const AUTO_VERIFY_MAX_BYTES = 2 * 1024 ** 3;

/** Whether files of `totalBytes` are hashed under `policy`. */
export function hashesFiles(policy: VerifyPolicy, totalBytes: number): boolean {
    return policy === "always" || (policy === "auto" && totalBytes < AUTO_VERIFY_MAX_BYTES);
}

export function requireVerifyPolicy(value: unknown): VerifyPolicy {
    if (!VERIFY_POLICIES.includes(value as VerifyPolicy)) {
        throw new SelfRagError(`unknown verify policy ${JSON.stringify(value)} (expected ${VERIFY_POLICIES.join(", ")})`, "INVALID_ARGUMENT");
    }
    return value as VerifyPolicy;
}

/** Size and checksum of every data file present in `dir`, for the manifest (hashed concurrently). */
export async function recordIndexFiles(dir: string): Promise<Partial<Record<IndexDataFile, FileDigest>>> {
    const present = INDEX_DATA_FILES.filter((name) => fs.existsSync(path.join(dir, name)));
    const digests = await Promise.all(present.map((name) => digestFile(path.join(dir, name))));
    return Object.fromEntries(present.map((name, i) => [name, digests[i]]));
}

/** The data files an open in `mode` reads: vectors.f32 only for exact search (it can be as large as the graph). */
export function filesOpened(mode: "hnsw" | "exact"): IndexDataFile[] {
    return INDEX_DATA_FILES.filter((name) => name !== INDEX_FILES.exactVectors || mode === "exact");
}

/**
 * Checks `files` of the index at `dir` against the manifest's records: sizes always, checksums as
 * `policy` says. Throws INDEX_CORRUPT naming the directory and the file. Indexes built before the
 * records existed (no `files` in the manifest) are not checked: only recorded files are.
 */
export async function verifyIndexFiles(dir: string, manifest: IndexManifest, files: readonly IndexDataFile[],
    policy: VerifyPolicy = "auto"): Promise<void> {
    const records = manifest.files;
    if (records == null) return;
    const checked = files.filter((name) => records[name] != null);
    let total = 0;
    for (const name of checked) {
        const bytes = fileSize(path.join(dir, name));
        if (bytes == null) throw damaged(dir, `${name} is missing`);
        if (bytes !== records[name]!.bytes) throw damaged(dir, sizeMismatch(name, bytes, records[name]!.bytes, manifest));
        total += bytes;
    }
    if (!hashesFiles(policy, total)) return;
    const digests = await Promise.all(checked.map((name) => digest(dir, name)));
    const differing = checked.filter((name, i) => !sameDigest(digests[i], records[name]!));
    if (differing.length > 0) {
        const which = differing.map((name) => {
            const actual = digests[checked.indexOf(name)];
            return `${name} does not match the checksum recorded at build time (sha256 ${actual.sha256.slice(0, 16)}..., ` +
                `recorded ${records[name]!.sha256.slice(0, 16)}...)`;
        });
        throw damaged(dir, which.join("; "));
    }
}

/** What `selfrag index verify` found for one file. */
export interface FileCheck {
    file: string;
    /** "unrecorded": present, but the manifest holds no record of it (an index built before records). */
    status: "ok" | "mismatch" | "missing" | "unrecorded";
    actual?: FileDigest;
    expected?: FileDigest;
}

/** The files `selfrag index verify` checks: those recorded, or, for an older index, the data files present. */
export function filesToCheck(dir: string, manifest: IndexManifest): IndexDataFile[] {
    const records = manifest.files;
    return INDEX_DATA_FILES.filter((name) => records != null ? records[name] != null : fs.existsSync(path.join(dir, name)));
}

/** Hashes one file of the index and compares it with its record, if any. */
export async function checkIndexFile(dir: string, name: IndexDataFile, expected: FileDigest | undefined): Promise<FileCheck> {
    if (fileSize(path.join(dir, name)) == null) return {file: name, status: "missing", expected};
    const actual = await digest(dir, name);
    if (expected == null) return {file: name, status: "unrecorded", actual};
    return {file: name, status: sameDigest(actual, expected) ? "ok" : "mismatch", actual, expected};
}

function sameDigest(a: FileDigest, b: FileDigest): boolean {
    return a.bytes === b.bytes && a.sha256 === b.sha256;
}

async function digest(dir: string, name: string): Promise<FileDigest> {
    try {
        return await digestFile(path.join(dir, name));
    } catch (error) {
        throw damaged(dir, `${name} cannot be read (${(error as Error).message})`, error);
    }
}

/** The file's size, or undefined when it is not there (any other failure is thrown). */
function fileSize(file: string): number | undefined {
    return fs.statSync(file, {throwIfNoEntry: false})?.size;
}

/** A size difference, in rows for the flat vectors (the unit their reader reports). */
function sizeMismatch(name: IndexDataFile, bytes: number, recorded: number, manifest: IndexManifest): string {
    const sizes = `${bytes} bytes, recorded at build time: ${recorded}`;
    if (name !== INDEX_FILES.exactVectors) return `${name} is ${sizes}`;
    const rowBytes = 4 * manifest.embedder.dimensions;
    return bytes % rowBytes === 0
        ? `${name} holds ${bytes / rowBytes} vectors but the manifest says ${manifest.count} (${sizes})`
        : `${name} is not a whole number of ${manifest.embedder.dimensions}-dimensional f32 rows (${sizes})`;
}

function damaged(dir: string, what: string, cause?: unknown): SelfRagError {
    return new SelfRagError(`the index ${dir} is damaged: ${what}; rebuild it (selfrag index build --overwrite), ` +
        `or run \`selfrag index verify ${dir}\` to check every file`, "INDEX_CORRUPT", {cause});
}
