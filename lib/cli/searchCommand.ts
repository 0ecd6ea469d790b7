import {invalidParameterError} from "../errors.js";
import type {Embedder} from "../retrieval/Embedder.js";
import {GgufEmbedder} from "../retrieval/GgufEmbedder.js";
import {readManifest} from "../retrieval/IndexManifest.js";
import {PassageIndex, type SearchHit} from "../retrieval/PassageIndex.js";
import {searchResultsJson} from "../serving/responses.js";
import {integerOption} from "./options.js";
import {parseCommand} from "./contract.js";

const help = `Usage: selfrag search --index DIR [--k N] [--json] "query"

Finds the passages of an index (built with \`selfrag index build\`) closest to the query, embedding
it with the index's own embedder (the hashing embedder, or the GGUF model recorded in the index).
  --index DIR           the index directory
  --k N                 passages to return (5)
  --json                print {"results": [{"id", "title", "text", "score"}]} (score: cosine similarity)
  --embedder FILE.gguf  the index's embedding model, when it moved since the build
  --view                memory-map the vectors instead of loading them (large indexes)
  --expansion-search N  HNSW search ef (default: the index's; higher is slower and more exact)
  --exact               scan every vector instead of the HNSW graph (needs an index built with
                        --keep-vectors, or one whose calibration chose exact search)
  --hnsw                search the HNSW graph even when the calibration chose exact search
  --threads N --cpu`;

export async function searchCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag search", help, {args, allowPositionals: true, options: {
        index: {type: "string"}, k: {type: "string"}, json: {type: "boolean"}, embedder: {type: "string"}, view: {type: "boolean"},
        "expansion-search": {type: "string"}, exact: {type: "boolean"}, hnsw: {type: "boolean"}, threads: {type: "string"}, cpu: {type: "boolean"}
    }});
    if (parsed == null) return;
    const {values, positionals} = parsed;
    const query = positionals.join(" ").trim();
    if (values.index == null) throw invalidParameterError("--index", "an index directory", values.index);
    if (query === "") throw invalidParameterError("query", "the query as the last argument", query);
    if (values.exact && values.hnsw) throw invalidParameterError("--exact / --hnsw", "one of them", "both");
    const k = integerOption("--k", values.k) ?? 5;
    if (k < 1) throw invalidParameterError("--k", "an integer >= 1", values.k);
    const gpu = values.cpu ? false : "auto";
    let embedder: Embedder | undefined;
    if (values.embedder != null) {
        // Same input settings as at build time, so only the model's location differs.
        const details = readManifest(values.index).embedder.details as {maxTokens?: number, queryPrefix?: string, passagePrefix?: string};
        embedder = await GgufEmbedder.load({modelPath: values.embedder, gpu, queryPrefix: details.queryPrefix,
            passagePrefix: details.passagePrefix, contextSize: details.maxTokens != null ? details.maxTokens + 4 : undefined});
    }
    try {
        const index = await PassageIndex.open(values.index, {
            embedder, view: values.view, gpu, threads: integerOption("--threads", values.threads),
            expansionSearch: integerOption("--expansion-search", values["expansion-search"]),
            mode: values.exact ? "exact" : values.hnsw ? "hnsw" : undefined
        });
        try {
            const hits = await index.search(query, k);
            if (values.json) console.log(JSON.stringify(searchResultsJson(hits)));
            else printHits(hits);
        } finally {
            await index.close();
        }
    } finally {
        await embedder?.dispose();
    }
}

function printHits(hits: readonly SearchHit[]): void {
    if (hits.length === 0) {
        console.log("no passages found (the query has no words the index knows)");
        return;
    }
    hits.forEach((h, i) => {
        const text = h.text.length > 240 ? `${h.text.slice(0, 240)}...` : h.text;
        console.log(`${String(i + 1).padStart(2)}. ${h.score.toFixed(4)}  [${h.id ?? h.key}] ${h.title}\n    ${text}`);
    });
}
