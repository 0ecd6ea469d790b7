// Distributed evaluation (issue 14): questions/s of one fixed question file answered by
// `selfrag eval --redis` with 1, 2 and 3 `selfrag worker` processes, against the single-process
// `selfrag eval` of the same file, on this machine (2 cores shared by every process, so more
// workers cannot add compute: the point is what the queue costs per question).
//   - Each configuration is whole CLI processes over a real redis-server on a loopback port (no
//     persistence); workers are started (model loaded, connected) before the coordinator, and the
//     figure is the one each run reports itself (`--json`: questions answered / seconds from the
//     first question enqueued, or started, to the last record written): model loading is outside
//     both sides.
//   - Two models: the tiny fixture (a few ms of compute per question, so the ratio shows the queue's
//     overhead: job add, fetch, lock, return value, the coordinator's poll and remove) and the
//     bench fixture (random weights, ~53M parameters, where compute dominates).
//   - The same slots everywhere (12 sequences of 2048 tokens, 3 passages per question: 4 questions
//     at once per process), one thread per process; rounds alternate the configurations.
//   - CPU time, which a busy shared machine disturbs less than wall time: with 1 worker, the CPU of
//     the coordinator, the worker and redis-server together per question, against the single
//     process's; both as differences between the file and a 1-question file, so process start-up
//     and model loading cancel out. The difference is what the queue costs per question.
// Nothing asserts: ratios are reported (bench/results/distributed.{json,md}).
import {spawn} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {ensureBenchModel, ensureFixtureModel, MODEL_FILE} from "./benchModel.js";
import {environment, median, writeResult, type BenchResult, type Comparison, type Measurement} from "./common.js";
import {benchCacheDir, repoRoot} from "./peer/repoRoot.js";
import {freePort} from "../test-support/net.js";
import {CAPITALS} from "../test-support/corpora.js";

const SEQUENCES = 12;
/** What changes answers (the coordinator's), and the engine's options (the single process's and each worker's). */
const ANSWERS = ["--ndocs", "3", "--max-new-tokens", "16"];
const ENGINE = ["--sequences", String(SEQUENCES), "--threads", "1"];
const WORKER_COUNTS = [1, 2, 3];

interface Subject {
    id: string;
    label: string;
    model: string;
    questions: number;
    rounds: number;
}

interface Proc {
    pid: number;
    kill: (signal: NodeJS.Signals) => void;
    exited: Promise<{code: number | null, stdout: string, stderr: string}>;
    stdout: () => string;
}

function start(command: string, args: readonly string[]): Proc {
    const child = spawn(command, args, {stdio: ["ignore", "pipe", "pipe"]});
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => {
        out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
        err += c.toString();
    });
    const exited = new Promise<{code: number | null, stdout: string, stderr: string}>((resolve) =>
        child.on("close", (code) => resolve({code, stdout: out, stderr: err})));
    return {pid: child.pid!, kill: (s) => child.kill(s), exited, stdout: () => out};
}

async function until(what: string, condition: () => boolean, proc: Proc): Promise<void> {
    let exited = false;
    void proc.exited.then(() => {
        exited = true;
    });
    while (!condition()) {
        if (exited) throw new Error(`${what}: the process exited:\n${(await proc.exited).stderr.slice(-2000)}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
    }
}


function writeQuestions(file: string, count: number): void {
    const {ctxs, questions} = CAPITALS;
    const lines = Array.from({length: count}, (_, i) => {
        const [question, answer] = questions[i % questions.length];
        return JSON.stringify({id: `q${i}`, question: `${question} (${i})`, answers: [answer], ctxs});
    });
    fs.writeFileSync(file, lines.join("\n") + "\n");
}

/** A preload that reports the process's CPU time (every thread) when it exits. */
function cpuReporter(dir: string): string {
    const file = path.join(dir, "cpu-report.mjs");
    fs.writeFileSync(file, "process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`\\nbench-cpu-us ${u.user + u.system}\\n`); });\n");
    return file;
}

/** User + system CPU of a running process so far, in microseconds (Linux /proc; 100 ticks per second). */
function cpuOf(pid: number): number {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** Questions per second as the run reports it (`--json`), and the process's CPU time (us). */
async function evalRun(args: readonly string[], output: string, preload: string): Promise<{qps: number, cpuUs: number}> {
    fs.rmSync(output, {force: true});
    const cli = path.join(repoRoot(), "dist", "lib", "cli", "main.js");
    const result = await start(process.execPath, ["--import", preload, cli, "eval", ...args, "--output", output, "--json"]).exited;
    if (result.code !== 0) throw new Error(`selfrag eval ${args.join(" ")} failed:\n${result.stderr.slice(-2000)}`);
    const summary = JSON.parse(result.stdout.trim().split("\n").pop()!) as {answered: number, errors: number, questionsPerSecond: number};
    if (summary.errors > 0) throw new Error(`selfrag eval: ${summary.errors} errors`);
    const cpu = /bench-cpu-us (\d+)/.exec(result.stderr);
    if (cpu == null) throw new Error("selfrag eval: no CPU report");
    return {qps: summary.questionsPerSecond, cpuUs: Number(cpu[1])};
}

function measurementOf(id: string, label: string, questionsPerSecond: readonly number[]): Measurement {
    const us = questionsPerSecond.map((q) => 1e6 / q);
    const mean = us.reduce((a, b) => a + b, 0) / us.length;
    const sd = Math.sqrt(us.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, us.length - 1));
    return {id, label, unit: "question (wall time / questions)", medianUs: median(us), meanUs: mean,
        rmePercent: us.length > 1 ? 100 * (sd / Math.sqrt(us.length)) / mean : 0, samples: us.length};
}

export async function run(): Promise<BenchResult> {
    const cache = path.join(benchCacheDir(), "distributed");
    fs.mkdirSync(cache, {recursive: true});
    await ensureBenchModel();
    const tiny = await ensureFixtureModel(path.join(benchCacheDir(), "tiny.gguf"), "tiny");
    const subjects: Subject[] = [
        {id: "tiny", label: "tiny fixture, 300 questions", model: tiny, questions: 300, rounds: Number(process.env.SELFRAG_BENCH_ROUNDS ?? 3)},
        {id: "bench", label: "bench fixture (~53M parameters), 40 questions", model: MODEL_FILE, questions: 40,
            rounds: Number(process.env.SELFRAG_BENCH_ROUNDS ?? 2)}
    ];
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const redis = start("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    await until("redis-server", () => /Ready to accept connections/.test(redis.stdout()), redis);
    const cli = path.join(repoRoot(), "dist", "lib", "cli", "main.js");
    const preload = cpuReporter(cache);
    const samples = new Map<string, number[]>();
    /** CPU time per question (us) of the single process and of the 1-worker run (coordinator + worker + redis). */
    const cpu = new Map<string, number[]>();
    const addCpu = (id: string, us: number) => cpu.set(id, [...cpu.get(id) ?? [], us]);
    const add = (id: string, qps: number) => samples.set(id, [...samples.get(id) ?? [], qps]);
    try {
        for (const subject of subjects) {
            const input = path.join(cache, `${subject.id}-questions.jsonl`);
            writeQuestions(input, subject.questions);
            const one = path.join(cache, `${subject.id}-one-question.jsonl`);
            writeQuestions(one, 1);
            const output = path.join(cache, `${subject.id}-out.jsonl`);
            for (let round = 0; round < subject.rounds; round++) {
                const single = await evalRun(["--model", subject.model, "--input", input, ...ANSWERS, ...ENGINE], output, preload);
                const singleOne = await evalRun(["--model", subject.model, "--input", one, ...ANSWERS, ...ENGINE], output, preload);
                add(`${subject.id}.single`, single.qps);
                addCpu(`${subject.id}.single`, (single.cpuUs - singleOne.cpuUs) / (subject.questions - 1));
                console.log(`${subject.id} round ${round + 1}: single process ${single.qps.toFixed(2)} questions/s`);
                const workers: Proc[] = [];
                /** The coordinator's CPU plus what the workers and redis-server spent meanwhile. */
                const distributed = async (file: string) => {
                    const before = workers.reduce((a, w) => a + cpuOf(w.pid), cpuOf(redis.pid));
                    const result = await evalRun(["--redis", url, "--model", subject.model, "--input", file, ...ANSWERS], output, preload);
                    const after = workers.reduce((a, w) => a + cpuOf(w.pid), cpuOf(redis.pid));
                    return {qps: result.qps, cpuUs: result.cpuUs + after - before};
                };
                try {
                    for (const count of WORKER_COUNTS) {
                        while (workers.length < count) {
                            const w = start(process.execPath, [cli, "worker", "--redis", url, "--model", subject.model, ...ENGINE]);
                            workers.push(w);
                            await until("worker start", () => /^selfrag: worker on queue/m.test(w.stdout()), w);
                        }
                        const result = await distributed(input);
                        if (count === 1) addCpu(`${subject.id}.workers1`, (result.cpuUs - (await distributed(one)).cpuUs) / (subject.questions - 1));
                        add(`${subject.id}.workers${count}`, result.qps);
                        console.log(`${subject.id} round ${round + 1}: ${count} worker${count === 1 ? "" : "s"} ${result.qps.toFixed(2)} questions/s`);
                    }
                } finally {
                    for (const w of workers) w.kill("SIGTERM");
                    await Promise.all(workers.map((w) => w.exited));
                }
            }
        }
    } finally {
        redis.kill("SIGTERM");
        await redis.exited;
    }

    const measurements: Measurement[] = [];
    const comparisons: Comparison[] = [];
    for (const subject of subjects) {
        measurements.push(measurementOf(`${subject.id}.single`, `${subject.label}: single-process selfrag eval`, samples.get(`${subject.id}.single`)!));
        for (const count of WORKER_COUNTS) {
            measurements.push(measurementOf(`${subject.id}.workers${count}`, `${subject.label}: eval --redis, ${count} worker${count === 1 ? "" : "s"}`,
                samples.get(`${subject.id}.workers${count}`)!));
        }
        const single = median(samples.get(`${subject.id}.single`)!);
        for (const count of WORKER_COUNTS) {
            comparisons.push({label: `${subject.label}: questions/s, ${count} worker${count === 1 ? "" : "s"} / single process`,
                value: median(samples.get(`${subject.id}.workers${count}`)!) / single, unit: "x"});
        }
        comparisons.push({label: `${subject.label}: wall time per question, 1 worker minus single process`,
            value: 1e6 / median(samples.get(`${subject.id}.workers1`)!) - 1e6 / single, unit: "us"});
        const cpuSingle = median(cpu.get(`${subject.id}.single`)!);
        const cpuDistributed = median(cpu.get(`${subject.id}.workers1`)!);
        comparisons.push(
            {label: `${subject.label}: CPU per question, single process`, value: cpuSingle, unit: "us"},
            {label: `${subject.label}: CPU per question, 1 worker + coordinator + redis-server`, value: cpuDistributed, unit: "us"},
            {label: `${subject.label}: the queue's CPU cost per question (the difference)`, value: cpuDistributed - cpuSingle, unit: "us"});
    }
    const result: BenchResult = {
        name: "distributed",
        title: "Distributed evaluation: selfrag eval --redis with 1-3 selfrag worker processes vs the single-process selfrag eval",
        environment: environment("n/a (whole processes)"),
        measurements,
        comparisons,
        notes: [
            `Whole CLI processes and a real redis-server (${os.cpus().length} logical CPUs, shared by redis, the coordinator and every worker). ` +
            `${SEQUENCES} slots of 2048 tokens per process, 3 passages and 16 new tokens per question, 1 thread per process; ` +
            "rounds alternate single process, 1, 2 and 3 workers.",
            "questions/s is what each run reports with --json (answered / seconds from the start of answering to the last record written): " +
            "model loading is outside both; the distributed figure includes enqueuing and the coordinator's 100 ms polling for finished jobs.",
            "CPU per question: user + system time of every process involved (the single process; or the coordinator, the worker and " +
            "redis-server), for the file minus for a 1-question file, divided by the questions in between: start-up and model loading cancel.",
            "The tiny fixture needs a few ms of compute per question, so its ratios show the queue's overhead per question; the bench fixture's " +
            "show a compute-bound run. With 2 cores, workers beyond the second add no compute; on N machines each worker brings its own.",
            "Machines are shared and noisy: compare ratios, not absolute times."
        ]
    };
    writeResult(result);
    return result;
}
