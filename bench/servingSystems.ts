// The serving benchmarks' shared pieces (serving.bench.ts on the f32 fixture, serving1b.bench.ts on
// the 1B Q4_0 shape): the questions, the two HTTP systems (selfrag's /v1/answer, llama-server with
// the top-20 Self-RAG client of bench/peer), and the workload runner.
import http from "node:http";
import type {Passage} from "../lib/selfrag/prompts.js";
import type {LlamaServerPeer} from "./peer/LlamaServerPeer.js";
import {peerAnswer, peerAnswerLong, type PeerWork} from "./peer/topKSelfRag.js";

export const TOPICS = ["Eiffel Tower", "Carmen", "Danube", "Marie Curie", "Mount Fuji", "Amazon River", "Ada Lovelace", "Great Wall",
    "Sahara", "Beethoven", "Nile", "Kilimanjaro"];

export function passagesFor(topic: string): Passage[] {
    return [
        {title: topic, text: `${topic} is the subject of this passage, which gives its history, its place and the people linked to it.`},
        {title: `${topic} (history)`, text: `The history of ${topic} spans several centuries and is documented in many sources.`},
        {title: `${topic} (culture)`, text: `${topic} appears in literature, painting and film, and draws visitors every year.`}
    ];
}

export interface Request {
    long: boolean;
    question: string;
    passages: Passage[];
    maxNewTokens: number;
    threshold: number;
    utility: number;
    /** Arrival time from the start of the workload (ms). */
    at: number;
}

export function shortRequest(i: number, maxNewTokens: number, threshold: number, utility: number, at = 0): Request {
    const topic = TOPICS[i % TOPICS.length];
    return {long: false, question: `What is known about ${topic}? (${i})`, passages: passagesFor(topic), maxNewTokens, threshold, utility, at};
}

/** One answered request: its latency, and for streamed ones the time to the first event. */
export interface Outcome {
    answer: string;
    latencyMs: number;
    firstEventMs?: number;
}

export type System = (request: Request) => Promise<Outcome>;

/** How both systems answer: passages per question and the long-form search. */
export interface SystemSettings {
    ndocs: number;
    long: {beamWidth: number, maxDepth: number};
    /** selfrag's retrieval mode (default: the threshold rule); the peer always runs "always". */
    mode?: "always";
}

/** POST over a fresh connection (`Connection: close`), timing the first body bytes and the end. */
export function post(port: number, path: string, body: unknown): Promise<{status: number, text: string, firstByteMs: number, totalMs: number}> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
        const payload = Buffer.from(JSON.stringify(body));
        const request = http.request({host: "127.0.0.1", port, method: "POST", path, agent: false,
            headers: {"Connection": "close", "Content-Type": "application/json", "Content-Length": String(payload.length)}}, (response) => {
            const chunks: Buffer[] = [];
            let firstByteMs = -1;
            response.on("data", (chunk: Buffer) => {
                if (firstByteMs < 0) firstByteMs = performance.now() - started;
                chunks.push(chunk);
            });
            response.on("end", () => resolve({status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8"), firstByteMs,
                totalMs: performance.now() - started}));
            response.on("error", reject);
        });
        request.on("error", reject);
        request.end(payload);
    });
}

/** selfrag's server: one streamed POST /v1/answer per question. */
export function selfragSystem(port: number, settings: SystemSettings): System {
    return async (r) => {
        const body = {question: r.question, passages: r.passages, ndocs: settings.ndocs, maxNewTokens: r.maxNewTokens, threshold: r.threshold,
            weights: {utility: r.utility}, stream: true, ...(settings.mode != null ? {mode: settings.mode} : {}),
            ...(r.long ? {long: true, ...settings.long} : {})};
        const res = await post(port, "/v1/answer", body);
        if (res.status !== 200) throw new Error(`selfrag: HTTP ${res.status}: ${res.text.slice(0, 300)}`);
        // The last event (its lines: id, retry, event, data) must be the answer.
        const last = res.text.trim().split("\n\n").at(-1)!.split("\n");
        const data = last.find((line) => line.startsWith("data: "));
        if (!last.includes("event: answer") || data == null) throw new Error(`selfrag: the stream did not end with an answer: ${last.join("\n").slice(0, 300)}`);
        const answer = (JSON.parse(data.slice(6)) as {answer: string}).answer;
        return {answer, latencyMs: res.totalMs, firstEventMs: res.firstByteMs};
    };
}

/**
 * llama-server driven by the top-20 Self-RAG client, in mode "always" (see serving.bench.ts's header).
 * `work`, when given, adds up what the server reported doing for each answer (its timings).
 */
export function peerSystem(peer: LlamaServerPeer, settings: SystemSettings, work?: PeerWork): System {
    return async (r) => {
        const started = performance.now();
        const input = {question: r.question, passages: r.passages};
        const options = {ndocs: settings.ndocs, maxNewTokens: r.maxNewTokens, threshold: r.threshold, mode: "always" as const,
            weights: {use: r.utility}};
        const result = r.long ? await peerAnswerLong(peer, input, {...options, ...settings.long}) : await peerAnswer(peer, input, options);
        if (work != null) {
            work.requests += result.work.requests;
            work.promptEvaluated += result.work.promptEvaluated;
            work.promptCached += result.work.promptCached;
            work.predicted += result.work.predicted;
        }
        return {answer: result.answer, latencyMs: performance.now() - started};
    };
}

/**
 * Runs a workload: arrivals on schedule (or one after another), every request to completion.
 * Each run asks new questions (a run number leads the question), as real traffic does: a server
 * that caches prompts (llama-server does, per slot) must not answer a repeated run from its cache.
 */
let runNumber = 0;
export async function runWorkload(system: System, workload: {requests: Request[], sequential?: boolean},
    tag = `[run ${++runNumber}] `): Promise<{wallMs: number, outcomes: Outcome[]}> {
    workload = {...workload, requests: workload.requests.map((r) => ({...r, question: tag + r.question}))};
    const started = performance.now();
    const outcomes: Outcome[] = [];
    if (workload.sequential) {
        for (const r of workload.requests) outcomes.push(await system(r));
    } else {
        outcomes.push(...await Promise.all(workload.requests.map(async (r) => {
            const wait = r.at - (performance.now() - started);
            if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
            return system(r);
        })));
    }
    return {wallMs: performance.now() - started, outcomes};
}

export function percentile(values: readonly number[], p: number): number {
    const sorted = [...values].sort((a, b) => a - b);
    if (sorted.length === 0) return NaN;
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))];
}
