import fs from "node:fs";
import path from "node:path";
import {SelfRagError} from "../errors.js";
import type {CorpusFormat} from "./corpusReaders.js";
import type {EmbedderInfo} from "./Embedder.js";
import {digestText, type FileDigest} from "./fileDigest.js";
import type {SearchPlan} from "./SearchCalibration.js";
import {VECTOR_DTYPES, type VectorIndexConfig} from "./VectorIndex.js";

/** The files of an index directory. */
export const INDEX_FILES = {
    manifest: "manifest.json",
    vectors: "vectors.usearch",
    passages: "passages.sqlite",
    idf: "idf.bin",
    /** Flat f32 copy of the vectors for exact search (kept when exact search is the default, or asked for). */
    exactVectors: "vectors.f32"
} as const;

/** The files of an index but the manifest, which records their sizes and checksums. */
export type IndexDataFile = Exclude<(typeof INDEX_FILES)[keyof typeof INDEX_FILES], typeof INDEX_FILES.manifest>;
export const INDEX_DATA_FILES: readonly IndexDataFile[] = [INDEX_FILES.vectors, INDEX_FILES.passages, INDEX_FILES.idf, INDEX_FILES.exactVectors];

const FORMAT = "selfrag-passage-index";
const VERSION = 1;

/**
 * manifest.json of an index directory: what built the vectors (so a query is embedded the same
 * way, or refused), how they are stored, and where the passages came from.
 */
export interface IndexManifest {
    format: typeof FORMAT;
    version: typeof VERSION;
    createdAt: string;
    embedder: EmbedderInfo;
    vectors: VectorIndexConfig & {metric: "cos"};
    /**
     * How searches run by default, with the calibration that chose it (absent in indexes built
     * before calibration existed: HNSW at vectors.expansionSearch).
     */
    search?: SearchPlan;
    /** The flat vectors file for exact search, when the index has one. */
    exactVectors?: string;
    /** Passages (and vectors) in the index. */
    count: number;
    corpus: {file: string, format: CorpusFormat, bytes: number, malformed: number, duplicates: number};
    /**
     * Size and SHA-256 of each data file of the directory, recorded by the build and checked when
     * the index is opened (see IndexIntegrity.ts). Absent in indexes built before they were recorded.
     */
    files?: Partial<Record<IndexDataFile, FileDigest>>;
    /**
     * SHA-256 of this manifest as compact JSON without this field: a manifest damaged (or edited)
     * after the build is refused. Written by writeManifest.
     */
    manifestSha256?: string;
}

/** Writes dir/manifest.json with its own checksum; returns the manifest as written. */
export function writeManifest(dir: string, manifest: IndexManifest): IndexManifest {
    const {manifestSha256: _, ...content} = manifest;
    const sealed: IndexManifest = {...content, manifestSha256: manifestDigest(content)};
    fs.writeFileSync(path.join(dir, INDEX_FILES.manifest), JSON.stringify(sealed, null, 2) + "\n");
    return sealed;
}

/** The checksum over the parsed manifest, so it does not depend on the file's whitespace. */
function manifestDigest(content: object): string {
    return digestText(JSON.stringify(content));
}

/** Reads and checks dir/manifest.json; errors name the directory and the bad field. */
export function readManifest(dir: string): IndexManifest {
    const file = path.join(dir, INDEX_FILES.manifest);
    if (!fs.existsSync(dir)) throw new SelfRagError(`index directory not found: ${dir}`, "INDEX_NOT_FOUND");
    if (!fs.existsSync(file)) {
        throw new SelfRagError(`${dir} is not a selfrag index (no ${INDEX_FILES.manifest}); build one with \`selfrag index build\``,
            "INDEX_NOT_FOUND");
    }
    let value: unknown;
    try {
        value = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (error) {
        throw new SelfRagError(`${file}: not valid JSON (${(error as Error).message})`, "INDEX_CORRUPT");
    }
    const m = value as Partial<IndexManifest> | null;
    const bad = (field: string, expected: string) =>
        new SelfRagError(`${file}: field "${field}" should be ${expected}`, "INDEX_CORRUPT");
    if (m == null || typeof m !== "object" || Array.isArray(m)) throw bad("format", `"${FORMAT}"`);
    // Checked first: a byte flipped anywhere (a value, a key) is reported as damage, not as a field.
    if (m.manifestSha256 !== undefined) {
        const {manifestSha256, ...content} = m;
        if (manifestSha256 !== manifestDigest(content)) {
            throw new SelfRagError(`${file}: the manifest does not match its own checksum (field "manifestSha256"): it was damaged or ` +
                `edited after the build; rebuild the index (selfrag index build --overwrite)`, "INDEX_CORRUPT");
        }
    }
    if (m.format !== FORMAT) throw bad("format", `"${FORMAT}"`);
    if (m.version !== VERSION) {
        throw new SelfRagError(`${file}: index format version ${String(m.version)}, this selfrag reads version ${VERSION}; rebuild the index`,
            "INDEX_CORRUPT");
    }
    const e = m.embedder;
    if (e == null || (e.kind !== "hashing" && e.kind !== "gguf") || typeof e.fingerprint !== "string" || !isCount(e.dimensions) ||
        e.details == null || typeof e.details !== "object") {
        throw bad("embedder", "{kind: \"hashing\" | \"gguf\", name, dimensions, fingerprint, details}");
    }
    const v = m.vectors;
    if (v == null || !VECTOR_DTYPES.includes(v.dtype) || v.dimensions !== e.dimensions || !isCount(v.connectivity) ||
        !isCount(v.expansionAdd) || !isCount(v.expansionSearch)) {
        throw bad("vectors", `{dtype: ${VECTOR_DTYPES.join("|")}, dimensions: ${e.dimensions}, connectivity, expansionAdd, expansionSearch}`);
    }
    const plan = m.search;
    if (plan != null && (typeof plan !== "object" || (plan.mode !== "hnsw" && plan.mode !== "exact") || !isCount(plan.expansionSearch))) {
        throw bad("search", "{mode: \"hnsw\" | \"exact\", expansionSearch, ...}");
    }
    if (m.exactVectors != null && m.exactVectors !== INDEX_FILES.exactVectors) throw bad("exactVectors", `"${INDEX_FILES.exactVectors}" or absent`);
    if (plan?.mode === "exact" && m.exactVectors == null) throw bad("exactVectors", `"${INDEX_FILES.exactVectors}" (search.mode is "exact")`);
    if (typeof m.count !== "number" || !Number.isInteger(m.count) || m.count < 0) throw bad("count", "a non-negative integer");
    if (m.files !== undefined) checkFileRecords(m, bad);
    return m as IndexManifest;
}

/** The `files` field: a record of each data file the index has, and the manifest's checksum beside it. */
function checkFileRecords(m: Partial<IndexManifest>, bad: (field: string, expected: string) => SelfRagError): void {
    // Both are written together: a manifest with records but no checksum has lost its "manifestSha256" key.
    if (m.manifestSha256 === undefined) throw bad("manifestSha256", "the manifest's checksum (it records file checksums)");
    const files = m.files as Record<string, unknown> | null;
    if (files == null || typeof files !== "object" || Array.isArray(files)) throw bad("files", "{FILE: {bytes, sha256}}");
    for (const [name, record] of Object.entries(files)) {
        if (!(INDEX_DATA_FILES as readonly string[]).includes(name)) throw bad("files", `records of ${INDEX_DATA_FILES.join(", ")} only, not "${name}"`);
        const r = record as Partial<FileDigest> | null;
        if (r == null || typeof r.bytes !== "number" || !Number.isSafeInteger(r.bytes) || r.bytes < 0 ||
            typeof r.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(r.sha256)) {
            throw bad(`files.${name}`, "{bytes: a size, sha256: 64 hex digits}");
        }
    }
    const required: IndexDataFile[] = [INDEX_FILES.vectors, INDEX_FILES.passages, ...(m.exactVectors != null ? [INDEX_FILES.exactVectors] : [])];
    for (const name of required) if (files[name] == null) throw bad("files", `a record of ${name}`);
}

function isCount(value: unknown): value is number {
    return typeof value === "number" && Number.isInteger(value) && value > 0;
}
