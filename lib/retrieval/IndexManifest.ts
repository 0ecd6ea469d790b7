import fs from "node:fs";
import path from "node:path";
import {SelfRagError} from "../errors.js";
import type {CorpusFormat} from "./corpusReaders.js";
import type {EmbedderInfo} from "./Embedder.js";
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
}

export function writeManifest(dir: string, manifest: IndexManifest): void {
    fs.writeFileSync(path.join(dir, INDEX_FILES.manifest), JSON.stringify(manifest, null, 2) + "\n");
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
    if (m == null || typeof m !== "object" || m.format !== FORMAT) throw bad("format", `"${FORMAT}"`);
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
    return m as IndexManifest;
}

function isCount(value: unknown): value is number {
    return typeof value === "number" && Number.isInteger(value) && value > 0;
}
