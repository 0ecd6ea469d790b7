// Distributed evaluation on BullMQ + a real Redis (issue 14): `selfrag worker` processes take the
// questions that `selfrag eval --redis` enqueues, and the output equals a single-process
// `selfrag eval` of the same file, record for record, whatever dies on the way:
//   - 3 workers answer a 300-question file while one of them is SIGKILLed holding questions: BullMQ's
//     stalled-job check gives them to the others;
//   - the coordinator is SIGKILLed mid-run and restarted with --resume: the same records;
//   - Redis is stopped (SIGTERM: SHUTDOWN, append-only file flushed) mid-run and started again on the
//     same port: the run completes;
//   - a worker holding another model refuses the run's questions (MODEL_MISMATCH, exit 1) without
//     answering or failing them, and a right worker answers them;
//   - an unreachable Redis at start is one line REDIS_UNAVAILABLE.
// Every process is real (redis-server from Debian on a free loopback port, the CLI as child
// processes); waits are on states (records written, jobs held, processes exited), never on time.
import assert from "node:assert/strict";
import {spawn, type ChildProcess} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {Queue} from "bullmq";
import {Redis} from "ioredis";
import {randomModel, tempDir, tinyModel} from "../test-support/fixtures.js";
import {freePort} from "../test-support/net.js";
import {CAPITALS} from "../test-support/corpora.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const cli = path.join(root, "dist", "lib", "cli", "main.js");
const dir = path.join(tempDir, "distributed");
const QUEUE = "selfrag-test";
const QUESTIONS = 300;
/** What changes answers: the same for the single-process run and every distributed one. */
const SETTINGS = ["--ndocs", "3", "--max-new-tokens", "16"];
/** Short locks, so a dead worker's questions come back within seconds. */
const WORKER_LOCKS = ["--lock-duration", "3000", "--stalled-interval", "1000"];

interface Exit {code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string}
interface Proc {child: ChildProcess, pid: number, exited: Promise<Exit>, stdout: () => string, stderr: () => string}

const running = new Set<ChildProcess>();

function start(command: string, args: readonly string[]): Proc {
    const child = spawn(command, args, {stdio: ["ignore", "pipe", "pipe"], env: {...process.env, SELFRAG_DEBUG: ""}});
    running.add(child);
    let out = "";
    let err = "";
    child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
    });
    child.stderr!.on("data", (chunk: Buffer) => {
        err += chunk.toString();
    });
    const exited = new Promise<Exit>((resolve) => child.on("close", (code, signal) => {
        running.delete(child);
        resolve({code, signal, stdout: out, stderr: err});
    }));
    return {child, pid: child.pid!, exited, stdout: () => out, stderr: () => err};
}

const selfrag = (args: readonly string[]) => start(process.execPath, [cli, ...args]);

/** Polls `condition` until it holds; fails early when a process that must stay up has exited. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, alive: Proc[] = []): Promise<void> {
    for (;;) {
        if (await condition()) return;
        for (const p of alive) {
            if (p.child.exitCode != null || p.child.signalCode != null) {
                throw new Error(`waiting for ${what}: process ${p.pid} exited (${p.child.exitCode ?? p.child.signalCode}); stderr:\n${p.stderr()}`);
            }
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
    }
}


/** A redis-server on a loopback port, its queue kept in an append-only file in `data` (so a restart keeps it). */
async function startRedis(port: number, data: string): Promise<Proc> {
    const redis = start("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", data]);
    await waitFor("redis-server to accept connections", () => /Ready to accept connections/.test(redis.stdout()), [redis]);
    return redis;
}

/** The complete records of an output file (a line cut off by a kill is not one). */
function records(file: string): Record<string, unknown>[] {
    if (!fs.existsSync(file)) return [];
    const lines = fs.readFileSync(file, "utf8").split("\n");
    lines.pop(); // after the last newline: empty, or a record still being written
    return lines.filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
}

const recordCount = (file: string) => records(file).length;

/** The output has every question exactly once, each record equal to the single-process run's. */
function assertSameRecords(file: string, reference: Map<string, Record<string, unknown>>, ids?: readonly string[]): void {
    const got = records(file);
    const expected = ids ?? [...reference.keys()];
    assert.equal(got.length, expected.length, `${file}: one record per question`);
    // An error record names its file (each run reads its own copy) and line: compare the line only.
    const byId = new Map(got.map((r) => [String(r.id), withoutPath(r)]));
    assert.equal(byId.size, got.length, `${file}: no question twice`);
    for (const id of expected) assert.deepEqual(byId.get(id), withoutPath(reference.get(id)!), `${file}: question ${id}`);
}

function withoutPath(record: Record<string, unknown>): Record<string, unknown> {
    const error = record.error as {code: string, message: string} | undefined;
    return error == null ? record : {...record, error: {...error, message: error.message.replace(/^.*\.jsonl:(\d+): /, "line $1: ")}};
}

function writeQuestions(file: string, count: number): string[] {
    const {ctxs, questions} = CAPITALS;
    const ids: string[] = [];
    const lines: string[] = [];
    for (let i = 0; i < count; i++) {
        const [question, answer] = questions[i % questions.length];
        ids.push(`q${i}`);
        // q7's prompt does not fit a slot: it fails on every attempt and becomes an error record.
        const text = i === 7 ? "word ".repeat(3000) : i < questions.length ? question : `${question} (${i})`;
        lines.push(JSON.stringify({id: `q${i}`, question: text, answers: [answer], ctxs}));
    }
    fs.writeFileSync(file, lines.join("\n") + "\n");
    return ids;
}

function assertOneLineFailure(exit: Exit, code: string): string {
    assert.equal(exit.code, 1, `exit code (stderr: ${exit.stderr})`);
    const lines = exit.stderr.split("\n");
    assert.equal(lines.length, 2, `exactly one line on stderr, got:\n${exit.stderr}`);
    assert.match(lines[0], new RegExp(`^selfrag: .+ \\[${code}\\]$`));
    return lines[0];
}

describe("distributed evaluation (BullMQ on a real redis-server)", function () {
    let model: string;
    let input: string;
    let ids: string[];
    let reference: Map<string, Record<string, unknown>>;
    let port: number;
    let url: string;
    let data: string;
    let redis: Proc;
    let connection: Redis;
    let queue: Queue;
    let survivors: Proc[] = [];

    const worker = (extra: readonly string[] = [], modelFile = model) =>
        selfrag(["worker", "--redis", url, "--queue", QUEUE, "--model", modelFile, "--threads", "1", ...WORKER_LOCKS, ...extra]);
    const ready = (w: Proc) => waitFor("the worker's start line", () => /^selfrag: worker on queue/m.test(w.stdout()), [w]);
    /** The coordinator over a copy of the question file (its own run). */
    const coordinator = (file: string, output: string, extra: readonly string[] = []) =>
        selfrag(["eval", "--redis", url, "--queue", QUEUE, "--model", model, "--input", file, "--output", output, ...SETTINGS, ...extra]);
    const copyOfInput = (name: string) => {
        const file = path.join(dir, name);
        fs.copyFileSync(input, file);
        return file;
    };

    before(async function () {
        fs.mkdirSync(dir, {recursive: true});
        model = await tinyModel();
        input = path.join(dir, "questions.jsonl");
        ids = writeQuestions(input, QUESTIONS);
        data = fs.mkdtempSync(path.join(dir, "redis-"));
        port = await freePort();
        url = `redis://127.0.0.1:${port}`;
        redis = await startRedis(port, data);
        connection = new Redis(url, {maxRetriesPerRequest: null});
        connection.on("error", () => {
            // the test's own connection rides out the Redis restart like the CLI's
        });
        queue = new Queue(QUEUE, {connection});
    });

    after(async function () {
        await queue?.close().catch(() => undefined);
        connection?.disconnect();
        for (const child of running) child.kill("SIGKILL");
        await redis?.exited;
    });

    it("the single-process run of the file (the reference)", async function () {
        const output = path.join(dir, "single.jsonl");
        const run = await selfrag(["eval", "--model", model, "--input", input, "--output", output, ...SETTINGS, "--threads", "1"]).exited;
        assert.equal(run.code, 0, run.stderr);
        reference = new Map(records(output).map((r) => [String(r.id), r]));
        assert.equal(reference.size, QUESTIONS);
        assert.deepEqual([...reference.values()].filter((r) => r.error != null).map((r) => [r.id, (r.error as {code: string}).code]),
            [["q7", "CONTEXT_OVERFLOW"]]);
    });

    it("3 workers answer 300 questions; one SIGKILLed holding questions: they are answered by the others, each once", async function () {
        const workers = [worker(), worker(), worker()];
        await Promise.all(workers.map(ready));
        const output = path.join(dir, "kill.jsonl");
        const run = coordinator(copyOfInput("kill-questions.jsonl"), output);
        await waitFor("30 records", () => recordCount(output) >= 30, [run, ...workers]);

        // Freeze a worker holding questions (so it can neither finish nor renew them), note them, kill it.
        const holder = (pid: number) => `${os.hostname()}:${pid}`;
        let victim: Proc | undefined;
        let held: string[] = [];
        for (const w of workers) {
            w.child.kill("SIGSTOP");
            held = (await queue.getActive()).filter((j) => j.processedBy === holder(w.pid)).map((j) => j.id!);
            if (held.length > 0) {
                victim = w;
                break;
            }
            w.child.kill("SIGCONT");
        }
        assert.ok(victim != null, "a worker holds questions mid-run");
        victim.child.kill("SIGKILL");
        const killed = await victim.exited;
        assert.equal(killed.signal, "SIGKILL");
        assert.ok(recordCount(output) < QUESTIONS, "killed mid-run");

        const done = await run.exited;
        assert.equal(done.code, 0, done.stderr);
        assertSameRecords(output, reference);
        // Job ids are "<run id>-<question id>".
        const written = new Set(records(output).map((r) => String(r.id)));
        for (const id of held) assert.ok(written.has(id.slice(id.indexOf("-") + 1)), `the dead worker's question ${id} was answered`);
        assert.match(done.stdout, /299 answered, .*1 errors/);
        survivors = workers.filter((w) => w !== victim);
    });

    it("the coordinator SIGKILLed mid-run and restarted with --resume ends with the same records", async function () {
        const file = copyOfInput("resume-questions.jsonl");
        const output = path.join(dir, "resume.jsonl");
        const first = coordinator(file, output);
        await waitFor("50 records", () => recordCount(output) >= 50, [first, ...survivors]);
        first.child.kill("SIGKILL");
        await first.exited;
        const before = recordCount(output);
        assert.ok(before < QUESTIONS, "killed mid-run");

        const resumed = await coordinator(file, output, ["--resume"]).exited;
        assert.equal(resumed.code, 0, resumed.stderr);
        assertSameRecords(output, reference);
        assert.match(resumed.stdout, /the whole file: 300 records/);
        // Written records leave Redis: nothing of the run is left in the queue.
        const counts = await queue.getJobCounts("waiting", "active", "delayed", "completed", "failed");
        assert.deepEqual(counts, {waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0});
    });

    it("Redis stopped mid-run (SIGTERM) and started again on the same port: the run completes", async function () {
        const output = path.join(dir, "restart.jsonl");
        const run = coordinator(copyOfInput("restart-questions.jsonl"), output);
        await waitFor("30 records", () => recordCount(output) >= 30, [run, ...survivors]);
        redis.child.kill("SIGTERM");
        const stopped = await redis.exited;
        assert.equal(stopped.code, 0, stopped.stdout);
        assert.ok(recordCount(output) < QUESTIONS, "stopped mid-run");
        redis = await startRedis(port, data);

        const done = await run.exited;
        assert.equal(done.code, 0, done.stderr);
        assertSameRecords(output, reference);
        assert.match(done.stderr, /warning: lost Redis at redis:\/\/127\.0\.0\.1:\d+ .*\n(.*\n)*selfrag: Redis at .* is back/);
        for (const w of survivors) assert.equal(w.child.exitCode, null, "the workers rode it out");
    });

    it("SIGTERM: a worker finishes what it holds and exits 0", async function () {
        for (const w of survivors) w.child.kill("SIGTERM");
        for (const w of survivors) {
            const exit = await w.exited;
            assert.equal(exit.code, 0, exit.stderr);
            assert.match(exit.stderr, /worker: \d+ answered/);
        }
    });

    it("a worker with another model refuses the run's questions (MODEL_MISMATCH) and a right worker answers them", async function () {
        const few = ids.slice(0, 20);
        const file = path.join(dir, "mismatch-questions.jsonl");
        fs.writeFileSync(file, fs.readFileSync(input, "utf8").split("\n").slice(0, few.length).join("\n") + "\n");
        const output = path.join(dir, "mismatch.jsonl");
        const run = coordinator(file, output);
        await waitFor("the questions enqueued", () => /20 questions enqueued/.test(run.stderr()), [run]);
        assert.match(run.stderr(), /no worker is connected yet/);
        assert.equal(await queue.getWaitingCount(), few.length);

        const wrong = await worker([], await randomModel()).exited;
        const line = assertOneLineFailure(wrong, "MODEL_MISMATCH");
        assert.match(line, /refusing the questions of run [0-9a-f]{16}/);
        assert.equal(recordCount(output), 0, "nothing answered by the wrong model");
        const counts = await queue.getJobCounts("waiting", "active", "delayed", "completed", "failed");
        assert.deepEqual(counts, {waiting: few.length, active: 0, delayed: 0, completed: 0, failed: 0}, "every question back in the queue, none failed");

        const right = worker();
        const done = await run.exited;
        assert.equal(done.code, 0, done.stderr);
        assertSameRecords(output, reference, few);
        right.child.kill("SIGTERM");
        assert.equal((await right.exited).code, 0);
    });

    it("Redis unreachable at start: one line REDIS_UNAVAILABLE from the coordinator and from a worker", async function () {
        const closed = `redis://127.0.0.1:${await freePort()}`;
        const output = path.join(dir, "unreachable.jsonl");
        const coordinatorExit = await selfrag(["eval", "--redis", closed, "--model", model, "--input", input, "--output", output, ...SETTINGS]).exited;
        assert.match(assertOneLineFailure(coordinatorExit, "REDIS_UNAVAILABLE"), /cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
        const workerExit = await selfrag(["worker", "--redis", closed, "--model", model]).exited;
        assertOneLineFailure(workerExit, "REDIS_UNAVAILABLE");
        const bad = await selfrag(["eval", "--redis", "localhost:6379", "--model", model, "--input", input, "--output", output]).exited;
        assertOneLineFailure(bad, "INVALID_ARGUMENT");
        const together = await selfrag(["eval", "--redis", url, "--batch", "8", "--model", model, "--input", input, "--output", output]).exited;
        assert.match(assertOneLineFailure(together, "INVALID_ARGUMENT"), /--batch cannot be used with --redis/);
    });
});
