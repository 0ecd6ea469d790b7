// `selfrag bench` output, as llama-bench's: a Markdown table by default, or json / jsonl / csv so
// results from many machines can be collected.
import {SelfRagError} from "../errors.js";
import type {BenchResult, BenchRow} from "./ModelBench.js";

export type BenchFormat = "md" | "json" | "jsonl" | "csv";
export const BENCH_FORMATS: readonly BenchFormat[] = ["md", "json", "jsonl", "csv"];

const COLUMNS = ["kind", "test", "threads", "sequences", "mean", "std", "unit", "repetitions"] as const;

function gib(bytes: number): string {
    return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function params(n: number): string {
    return n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : `${(n / 1e6).toFixed(2)} M`;
}

function extraText(row: BenchRow): string {
    return Object.entries(row.extra ?? {}).map(([k, v]) => `${k} ${typeof v === "number" ? Number(v.toFixed(3)) : v}`).join(", ");
}

export function formatBench(result: BenchResult, format: BenchFormat): string {
    const h = result.header;
    switch (format) {
        case "json":
            return JSON.stringify(result, null, 2) + "\n";
        case "jsonl":
            return result.rows.map((r) => JSON.stringify({...h, ...r})).join("\n") + "\n";
        case "csv": {
            const headerKeys = Object.keys(h) as (keyof typeof h)[];
            const quote = (v: unknown) => {
                const text = v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
                return /[",\n]/.test(text) ? `"${text.replaceAll("\"", "\"\"")}"` : text;
            };
            const lines = [[...headerKeys, ...COLUMNS, "extra"].join(",")];
            for (const r of result.rows) lines.push([...headerKeys.map((k) => quote(h[k])), ...COLUMNS.map((c) => quote(r[c])), quote(r.extra ?? {})].join(","));
            return lines.join("\n") + "\n";
        }
        case "md": {
            const lines = [
                `model: ${h.model} (${gib(h.sizeBytes)}, ${params(h.parameters)} parameters, ${h.quantization}); backend ${h.backend}` +
                    `${h.cpuBackend != null ? ` (ggml CPU ${h.cpuBackend})` : ""}; ` +
                    `${h.kvCache != null ? `KV cache ${h.kvCache.type}, ${(h.kvCache.bytesPerSlot / 2 ** 20).toFixed(1)} MiB per slot of ${h.kvCache.tokensPerSlot} tokens; ` : ""}` +
                    `${h.cpu}, ${h.cores} logical CPUs, ${gib(h.memoryBytes)}; Node ${h.node}; ${h.date}`,
                "",
                "| kind | test | threads | sequences | value | unit | notes |",
                "|---|---|---:|---:|---:|---|---|"
            ];
            for (const r of result.rows) {
                lines.push(`| ${r.kind} | ${r.test} | ${r.threads} | ${r.sequences} | ${r.mean.toFixed(2)} ± ${r.std.toFixed(2)} | ${r.unit} | ${extraText(r)} |`);
            }
            return lines.join("\n") + "\n";
        }
        default:
            throw new SelfRagError(`unknown output format "${String(format)}" (${BENCH_FORMATS.join(", ")})`, "INVALID_ARGUMENT");
    }
}
