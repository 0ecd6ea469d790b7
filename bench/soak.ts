// `npm run soak`: a long mixed load against a real `selfrag serve` process on the tiny fixture
// model, then the server's memory and slots. Not part of `npm test` (it takes minutes).
//
//   node dist/bench/soak.js [--requests 10000] [--concurrency 64] [--model FILE] [--warmup 1000]
//
// Requests (seeded, so every run sends the same sequence): short-form answers, long-form answers,
// streamed ones of both, requests aborted by the client at a random moment, and invalid ones
// (bad JSON, unknown or mistyped fields, a body over --max-body, wrong route or method). Each kind
// has the statuses it may get; anything else is an unexpected status. Pass: zero unexpected
// statuses, the server's RSS after the run within 10% of its RSS after the warm-up, every slot
// free and the step loop drained at the end. Writes bench/results/soak.{json,md}.
import {spawn} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {writeFixtureModel} from "../lib/fixtures/FixtureModel.js";
import {mulberry32} from "../lib/random.js";
import {loadAddon} from "../lib/engine/addon.js";
import {environment, resultsDir} from "./common.js";

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
};
const REQUESTS = option("requests", 10_000);
const CONCURRENCY = option("concurrency", 64);
// The server's RSS climbs for the first ~2,000 requests of this mix (V8's heap and the allocator's
// arenas reaching their working size) and is flat after; growth is measured from there, and the
// report also gives it from 1,000 requests.
const WARMUP = option("warmup", Math.min(2000, Math.floor(REQUESTS / 5)));
const MAX_BODY = 65_536;
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "lib", "cli", "main.js");

const CORPUS = [
    {id: "b", title: "Berlin", text: "Berlin is the capital of Germany."},
    {id: "p", title: "Paris", text: "Paris is the capital and largest city of France. Paris"},
    {id: "r", title: "Rome", text: "Rome is the capital of Italy."},
    {id: "m", title: "Madrid", text: "Madrid is in Spain, on the Manzanares river, and is its largest city."}
];
const QUESTIONS = ["What is the capital of France?", "Say hello.", "Tell me a bio of the capital of France.", "Where is Rome?",
    "Which city is the capital of Germany?", "Tell me about Madrid."];

type Kind = "short" | "long" | "stream" | "aborted" | "invalid";
interface Plan {
    kind: Kind;
    route: string;
    method: string;
    body?: string;
    /** Statuses this request may get ("abort" when the client gave up first). */
    expect: string[];
    /** Aborted requests: after this many ms, or after the first streamed event when -1. */
    abortAfterMs?: number;
}

function planOf(i: number, rng: () => number): Plan {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
    const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
    const question = `${pick(QUESTIONS)} (${i})`;
    const passages = [...CORPUS].sort(() => rng() - 0.5).slice(0, int(1, 4));
    const short = {question, passages, ndocs: Math.min(passages.length, int(1, 3)), maxNewTokens: int(8, 48), threshold: Math.round(rng() * 100) / 100};
    const long = {question, passages: passages.slice(0, 2), long: true, beamWidth: int(1, 2), ndocs: Math.min(2, passages.length), maxDepth: int(2, 3),
        maxNewTokens: int(10, 24)};
    const x = rng();
    const answer = (body: object) => ({route: "/v1/answer", method: "POST", body: JSON.stringify(body)});
    if (x < 0.40) return {kind: "short", ...answer(short), expect: ["200"]};
    if (x < 0.52) return {kind: "long", ...answer(long), expect: ["200"]};
    if (x < 0.62) return {kind: "stream", ...answer({...(rng() < 0.5 ? short : long), stream: true}), expect: ["200"]};
    if (x < 0.80) {
        return {kind: "aborted", ...answer(rng() < 0.5 ? {...short, stream: true} : long), expect: ["200", "abort"],
            abortAfterMs: rng() < 0.3 ? -1 : int(0, 120)};
    }
    const invalid: [Omit<Plan, "kind" | "expect">, string][] = [
        [{route: "/v1/answer", method: "POST", body: "{\"question\": "}, "400"],
        [{route: "/v1/answer", method: "POST", body: JSON.stringify({...short, nDocs: 3})}, "400"],
        [{route: "/v1/answer", method: "POST", body: JSON.stringify({...short, ndocs: "three"})}, "400"],
        [{route: "/v1/answer", method: "POST", body: JSON.stringify({question: "x".repeat(MAX_BODY * 4)})}, "413"],
        [{route: "/v1/nothing", method: "POST", body: "{}"}, "404"],
        [{route: "/v1/answer", method: "GET"}, "405"],
        [{route: "/v1/answer", method: "POST", body: JSON.stringify({...short, maxNewTokens: 5000})}, "422"]
    ];
    const [request, status] = pick(invalid);
    return {kind: "invalid", ...request, expect: [status]};
}

function rssOf(pid: number): number {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Resident bytes per mapping (path, or "[anon]" / "[heap]"), for finding what grew (SELFRAG_SOAK_SMAPS=1). */
function smapsOf(pid: number): Map<string, number> {
    const out = new Map<string, number>();
    let current = "";
    for (const line of fs.readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
        const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
        if (head != null) {
            current = head[1] === "" ? "[anon]" : head[1];
            continue;
        }
        const rss = /^Rss:\s+(\d+) kB/.exec(line);
        if (rss != null) out.set(current, (out.get(current) ?? 0) + Number(rss[1]) * 1024);
    }
    return out;
}

function percentile(values: number[], p: number): number {
    if (values.length === 0) return 0;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function main(): Promise<void> {
    let model = args.includes("--model") ? args[args.indexOf("--model") + 1] : undefined;
    if (model == null) {
        model = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "selfrag-soak-")), "tiny.gguf");
        await writeFixtureModel(model, "tiny");
    }
    const server = spawn(process.execPath, [cli, "serve", "--model", model, "--port", "0", "--cpu", "--sequences", "12", "--context-size", "512",
        "--max-body", String(MAX_BODY)], {stdio: ["ignore", "pipe", "pipe"]});
    let serverErr = "";
    server.stderr!.on("data", (d: Buffer) => void (serverErr += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        server.stdout!.on("data", (d: Buffer) => {
            out += d.toString();
            const m = /on (http:\/\/[\d.]+:\d+)/.exec(out);
            if (m != null) resolve(m[1]);
        });
        server.once("exit", (code) => reject(new Error(`selfrag serve exited (${code}):\n${serverErr}`)));
    });
    const stats = async () => (await (await fetch(url + "/v1/stats")).json()) as {scheduler: Record<string, number>,
        engine: {activeSlots: number, pendingWork: number, decodeCalls: number, generatedTokens: number},
        process?: {rssBytes: number, heapUsedBytes: number, heapTotalBytes: number, externalBytes: number}};

    const rng = mulberry32(20_000);
    const plans = Array.from({length: REQUESTS}, (_, i) => planOf(i, rng));
    const byKind = new Map<Kind, Map<string, number>>();
    const latencies = new Map<Kind, number[]>();
    const unexpected: {i: number, kind: Kind, got: string, expect: string[], detail?: string}[] = [];
    const rssSamples: {done: number, rss: number, heap?: number, heapTotal?: number, external?: number}[] = [{done: 0, rss: rssOf(server.pid!)}];
    let rssAt1000 = 0;
    let smapsAtWarmup: Map<string, number> | undefined;
    let next = 0;
    let done = 0;
    let rssAfterWarmup = 0;
    const started = performance.now();

    const one = async (i: number): Promise<void> => {
        const plan = plans[i];
        const abort = new AbortController();
        let timer: NodeJS.Timeout | undefined;
        if (plan.abortAfterMs != null && plan.abortAfterMs >= 0) timer = setTimeout(() => abort.abort(), plan.abortAfterMs);
        const t0 = performance.now();
        let got: string;
        let detail: string | undefined;
        try {
            const res = await fetch(url + plan.route, {method: plan.method, body: plan.body, signal: abort.signal});
            got = String(res.status);
            if (plan.abortAfterMs === -1 && res.body != null) {
                const reader = res.body.getReader();
                await reader.read();
                abort.abort();
                await reader.cancel().catch(() => undefined);
                got = "abort";
            } else {
                const text = await res.text();
                if (res.status !== 200 && !text.includes("\"code\"")) detail = `no JSON error body: ${text.slice(0, 100)}`;
                if (res.status >= 400) detail = text.slice(0, 200);
            }
        } catch (error) {
            got = (error as Error).name === "AbortError" ? "abort" : `error ${(error as Error & {cause?: {code?: string}}).cause?.code ?? (error as Error).message}`;
        } finally {
            if (timer != null) clearTimeout(timer);
        }
        if (got === "200") latencies.set(plan.kind, [...(latencies.get(plan.kind) ?? []), performance.now() - t0]);
        const counts = byKind.get(plan.kind) ?? new Map<string, number>();
        counts.set(got, (counts.get(got) ?? 0) + 1);
        byKind.set(plan.kind, counts);
        if (!plan.expect.includes(got)) unexpected.push({i, kind: plan.kind, got, expect: plan.expect, detail});
        done++;
        if (done === WARMUP) {
            rssAfterWarmup = rssOf(server.pid!);
            if (process.env.SELFRAG_SOAK_SMAPS === "1") smapsAtWarmup = smapsOf(server.pid!);
        }
        if (done === 1000) rssAt1000 = rssOf(server.pid!);
        if (done % 500 === 0) {
            const memory = (await stats()).process;
            rssSamples.push({done, rss: rssOf(server.pid!), heap: memory?.heapUsedBytes, heapTotal: memory?.heapTotalBytes, external: memory?.externalBytes});
            const seconds = (performance.now() - started) / 1000;
            process.stderr.write(`soak: ${done}/${REQUESTS} in ${seconds.toFixed(0)} s, server RSS ${(rssSamples.at(-1)!.rss / 1048576).toFixed(1)} MB, ` +
                `${unexpected.length} unexpected\n`);
        }
    };
    await Promise.all(Array.from({length: CONCURRENCY}, async () => {
        while (next < plans.length) await one(next++);
    }));
    const seconds = (performance.now() - started) / 1000;

    // Drained: no slot held, nothing queued or running, no work left in the step loop.
    let final = await stats();
    const drainStart = Date.now();
    while ((final.engine.activeSlots > 0 || final.scheduler.running > 0 || final.scheduler.queued > 0 || final.engine.pendingWork > 0) &&
        Date.now() - drainStart < 30_000) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        final = await stats();
    }
    const rssEnd = rssOf(server.pid!);
    if (smapsAtWarmup != null) {
        const end = smapsOf(server.pid!);
        const grew = [...end].map(([k, v]) => [k, v - (smapsAtWarmup!.get(k) ?? 0)] as const).filter(([, d]) => Math.abs(d) > 256 * 1024)
            .sort((a, b) => b[1] - a[1]);
        process.stderr.write(`soak: RSS change per mapping since warm-up (MB): ${grew.map(([k, d]) => `${k} ${(d / 1048576).toFixed(1)}`).join("; ")}\n`);
    }
    server.kill("SIGTERM");
    await new Promise((resolve) => server.once("exit", resolve));

    const growth = rssAfterWarmup > 0 ? (rssEnd - rssAfterWarmup) / rssAfterWarmup : 0;
    const slotsFree = final.engine.activeSlots === 0 && final.scheduler.running === 0 && final.scheduler.queued === 0 && final.engine.pendingWork === 0;
    const pass = unexpected.length === 0 && growth < 0.10 && slotsFree;
    const mb = (b: number) => Number((b / 1048576).toFixed(1));
    const {addon} = await loadAddon({gpu: false});
    const soak = {
        date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model.trim(), logicalCpus: os.cpus().length,
        requests: REQUESTS, concurrency: CONCURRENCY, warmup: WARMUP, seconds: Number(seconds.toFixed(1)),
        requestsPerSecond: Number((REQUESTS / seconds).toFixed(1)),
        outcomes: Object.fromEntries([...byKind].map(([k, m]) => [k, Object.fromEntries(m)])),
        unexpected: unexpected.length, unexpectedExamples: unexpected.slice(0, 20),
        latencyMs: Object.fromEntries([...latencies].map(([k, v]) => [k, {p50: Math.round(percentile(v, 0.5)), p95: Math.round(percentile(v, 0.95)),
            max: Math.round(Math.max(...v))}])),
        rssMB: {start: mb(rssSamples[0].rss), afterWarmup: mb(rssAfterWarmup), end: mb(rssEnd), max: mb(Math.max(...rssSamples.map((s) => s.rss), rssEnd))},
        rssGrowthAfterWarmupPercent: Number((growth * 100).toFixed(2)),
        rssGrowthAfter1000Percent: rssAt1000 > 0 ? Number(((rssEnd - rssAt1000) / rssAt1000 * 100).toFixed(2)) : null,
        rssSamplesMB: rssSamples.map((s) => [s.done, mb(s.rss)]),
        heapUsedSamplesMB: rssSamples.filter((s) => s.heap != null).map((s) => [s.done, mb(s.heap!)]),
        heapTotalSamplesMB: rssSamples.filter((s) => s.heapTotal != null).map((s) => [s.done, mb(s.heapTotal!)]),
        externalSamplesMB: rssSamples.filter((s) => s.external != null).map((s) => [s.done, mb(s.external!)]),
        final: {activeSlots: final.engine.activeSlots, running: final.scheduler.running, queued: final.scheduler.queued,
            pendingWork: final.engine.pendingWork, scheduler: final.scheduler},
        pass
    };
    const result = soak;
    // The shape of the other bench/results files (no timings to chart: the figures are in `soak`).
    const saved = {name: "soak", title: `Soak: ${REQUESTS} mixed HTTP requests at concurrency ${CONCURRENCY}`,
        environment: environment(addon.kernelIsa()), measurements: [], comparisons: [],
        notes: [`${soak.unexpected} unexpected statuses; RSS growth after warm-up ${soak.rssGrowthAfterWarmupPercent}%; ` +
            `slots free at the end: ${slotsFree}; ${pass ? "pass" : "FAIL"}`], soak};
    fs.mkdirSync(resultsDir, {recursive: true});
    fs.writeFileSync(path.join(resultsDir, "soak.json"), JSON.stringify(saved, null, 2) + "\n");
    const rows = [...byKind].map(([k, m]) => `| ${k} | ${[...m].reduce((n, [, c]) => n + c, 0)} | ${[...m].map(([s, c]) => `${s}: ${c}`).join(", ")} | ` +
        `${result.latencyMs[k] != null ? `${result.latencyMs[k].p50} / ${result.latencyMs[k].p95}` : "-"} |`);
    const md = `# Soak: ${REQUESTS} mixed HTTP requests at concurrency ${CONCURRENCY}

\`npm run soak\` against \`selfrag serve\` (tiny fixture model, 12 slots, --max-body ${MAX_BODY}), ${result.date}, Node ${result.node},
${result.cpu} (${result.logicalCpus} logical CPUs). Seeded request mix; each kind has the statuses it may get.

| kind | requests | outcomes | latency p50 / p95 (ms, 200s) |
|---|---|---|---|
${rows.join("\n")}

- **${result.unexpected} unexpected statuses**${result.unexpected > 0 ? ` (first: ${JSON.stringify(result.unexpectedExamples[0])})` : ""}.
- ${result.seconds} s, ${result.requestsPerSecond} requests/s.
- Server RSS: ${result.rssMB.start} MB at start, ${result.rssMB.afterWarmup} MB after the first ${WARMUP} requests, ${result.rssMB.end} MB at the end
  (max ${result.rssMB.max} MB): **${result.rssGrowthAfterWarmupPercent}% growth after warm-up** (limit 10%).
- At the end: ${final.engine.activeSlots} slots held, ${final.scheduler.running} running, ${final.scheduler.queued} queued, ${final.engine.pendingWork} work items in the step loop.
- Server counters: ${JSON.stringify(final.scheduler)}.
- Growth measured from 1,000 requests instead: ${result.rssGrowthAfter1000Percent}%.
- RSS samples (requests done, MB): ${result.rssSamplesMB.map(([d, m]) => `${d}: ${m}`).join(", ")}.
- JS heap used (requests done, MB): ${result.heapUsedSamplesMB.map(([d, m]) => `${d}: ${m}`).join(", ")}.
- JS heap reserved (heapTotal, MB): ${result.heapTotalSamplesMB.map(([d, m]) => `${d}: ${m}`).join(", ")}.
- Native memory V8 knows of (external, MB): ${result.externalSamplesMB.map(([d, m]) => `${d}: ${m}`).join(", ")}.

Result: **${pass ? "pass" : "FAIL"}**.
`;
    fs.writeFileSync(path.join(resultsDir, "soak.md"), md);
    console.log(md);
    process.exit(pass ? 0 : 1);
}

main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
});
