// The worker thread that owns a USearch index (see VectorIndex.ts for why it lives here). It
// answers one request at a time, in order; every reply carries the request's id.
import {parentPort} from "node:worker_threads";
import usearch, {type ScalarKind} from "usearch";
import {FlatVectors} from "./ExactSearch.js";
import type {VectorIndexConfig, WorkerReply, WorkerRequest} from "./VectorIndex.js";

let index: InstanceType<typeof usearch.Index> | undefined;
/** The flat copy of the vectors, for exact search (attached on request). */
let flat: FlatVectors | undefined;

function create(config: VectorIndexConfig): InstanceType<typeof usearch.Index> {
    return new usearch.Index({
        dimensions: config.dimensions, metric: usearch.MetricKind.Cos, quantization: config.dtype as ScalarKind,
        connectivity: config.connectivity, expansion_add: config.expansionAdd, expansion_search: config.expansionSearch, multi: false
    });
}

function handle(request: WorkerRequest): {value?: unknown, transfer?: ArrayBuffer[]} {
    switch (request.op) {
        case "create":
            index = create(request.config);
            return {value: {size: 0, dimensions: index.dimensions()}};
        case "open": {
            const opened = create(request.config);
            try {
                // view() checks the header against the file size at once; load() of a corrupt file
                // first tries to allocate whatever its header claims (15 s and gigabytes for a
                // 12-byte text file), so a file is always viewed before it is loaded.
                // (load() resets the index first, which unmaps the view.)
                opened.view(request.path);
                if (!request.view) opened.load(request.path);
            } catch (error) {
                throw Object.assign(new Error(`could not ${request.view ? "view" : "load"} the vector index ${request.path}: ` +
                    `${(error as Error).message}`), {code: "INDEX_CORRUPT"});
            }
            index = opened;
            return {value: {size: index.size(), dimensions: index.dimensions()}};
        }
        case "add":
            requireIndex().add(request.keys, request.vectors, request.threads);
            return {value: requireIndex().size()};
        case "search": {
            const matches = requireIndex().search(request.queries, request.k, request.threads) as unknown as
                {keys: BigUint64Array, distances: Float32Array, counts?: BigUint64Array};
            const rows = request.queries.length / requireIndex().dimensions();
            // One query gives a Matches (no counts, only the found entries); several give BatchMatches
            // padded to k per row. Reply in the batch layout either way.
            const keys = new BigUint64Array(rows * request.k);
            const distances = new Float32Array(rows * request.k);
            const counts = new Uint32Array(rows);
            if (matches.counts == null) {
                keys.set(matches.keys.subarray(0, request.k));
                distances.set(matches.distances.subarray(0, request.k));
                counts[0] = Math.min(matches.keys.length, request.k);
            } else {
                keys.set(matches.keys);
                distances.set(matches.distances);
                for (let i = 0; i < rows; i++) counts[i] = Number(matches.counts[i]);
            }
            return {value: {keys, distances, counts}, transfer: [keys.buffer, distances.buffer, counts.buffer]};
        }
        case "attachExact":
            flat = FlatVectors.open(request.path, request.dimensions, {load: request.load, firstKey: request.firstKey});
            return {value: {rows: flat.rows, loaded: flat.loaded}};
        case "exact": {
            if (flat == null) throw Object.assign(new Error("no exact-search vectors attached to this index"), {code: "INVALID_STATE"});
            const found = flat.search(request.queries, request.k, request.threads);
            return {value: found, transfer: [found.keys.buffer, found.distances.buffer, found.counts.buffer] as ArrayBuffer[]};
        }
        case "save":
            requireIndex().save(request.path);
            return {};
        case "stats":
            return {value: {size: index?.size() ?? 0, dimensions: index?.dimensions() ?? 0}};
    }
}

function requireIndex(): InstanceType<typeof usearch.Index> {
    if (index == null) throw Object.assign(new Error("the vector index was neither created nor opened"), {code: "INVALID_STATE"});
    return index;
}

parentPort!.on("message", (request: WorkerRequest) => {
    let reply: WorkerReply;
    let transfer: ArrayBuffer[] = [];
    try {
        const result = handle(request);
        reply = {id: request.id, ok: true, value: result.value};
        transfer = result.transfer ?? [];
    } catch (error) {
        const e = error as Error & {code?: string};
        // SelfRagErrors thrown by shared modules keep their code across the thread boundary.
        reply = {id: request.id, ok: false, message: e.message, code: e.code ?? "INTERNAL"};
    }
    parentPort!.postMessage(reply, transfer);
});
