// BullMQ (and its msgpackr native addon) is imported when the worker starts, not for `worker --help`.
import type {EvalWorker, EvalWorkerStats} from "../distributed/EvalWorker.js";
import {modelFingerprint} from "../distributed/fingerprint.js";
import type {RedisEvent} from "../distributed/redis.js";
import {checkRedisUrl, DEFAULT_QUEUE, displayUrl} from "../distributed/redisUrl.js";
import {invalidParameterError} from "../errors.js";
import {PassageIndex} from "../retrieval/PassageIndex.js";
import {SelfRagModel} from "../SelfRagModel.js";
import {CACHE_FLAGS_HELP, cacheFlags, cacheOptions, parseCommand} from "./contract.js";
import {integerOption, requireModel} from "./options.js";

const help = `Usage: selfrag worker --redis URL [--queue NAME] [--model FILE] [options]

Answers the questions of distributed evaluations (\`selfrag eval --redis URL ...\`, the coordinator)
from a BullMQ queue in Redis. Loads the model once and holds as many questions at once as its
slots allow, so they share every decode step; start one per machine (or per GPU), as many as you
like, while a run is going or before. A worker killed mid-question loses nothing: BullMQ gives its
questions to another worker once their locks expire.
  --redis URL           redis://HOST:PORT[/DB] of the queue (rediss:// for TLS); required
  --queue NAME          the queue (${DEFAULT_QUEUE}): the coordinator's --queue
  --model FILE          the coordinator's model (the same file, anywhere): questions of runs started with
                        another model are put back in the queue and the worker stops [MODEL_MISMATCH]
  --index DIR           retrieve for questions that bring no passages (the coordinator's file has none):
                        the same index on every machine (a shared file system or a copy), memory-mapped
  --sequences N         slots (20): N / ndocs questions at once in short form, N / (beam-width x ndocs) in long form
  --context-size N      tokens per slot (2048)
  --lock-duration MS    a question's lock (30000): a dead worker's questions return to the queue about this long after
  --stalled-interval MS how often expired locks are looked for (30000)
  --threads N --cpu
  ${CACHE_FLAGS_HELP}
SIGTERM or Ctrl-C: takes no more questions, finishes those it holds and exits 0; a second one leaves them
to another worker. Redis lost mid-run: the worker waits for it and goes on.`;

export async function workerCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag worker", help, {args, options: {
        redis: {type: "string"}, queue: {type: "string"}, model: {type: "string"}, index: {type: "string"}, sequences: {type: "string"},
        "context-size": {type: "string"}, "lock-duration": {type: "string"}, "stalled-interval": {type: "string"},
        threads: {type: "string"}, cpu: {type: "boolean"}, ...cacheFlags
    }});
    if (parsed == null) return;
    const {values} = parsed;
    const redis = checkRedisUrl(values.redis);
    const positive = (flag: string, value: string | undefined) => {
        const n = integerOption(flag, value);
        if (n != null && n < 1) throw invalidParameterError(flag, "a positive integer", value);
        return n;
    };
    const lockDurationMs = positive("--lock-duration", values["lock-duration"]);
    const stalledIntervalMs = positive("--stalled-interval", values["stalled-interval"]);
    const modelPath = requireModel(values.model);
    const fingerprint = await modelFingerprint(modelPath);
    // Before the model loads: an unreachable Redis is reported at once.
    await (await import("../distributed/redis.js")).checkRedis(redis);

    const index = values.index != null ? await PassageIndex.open(values.index, {view: true}) : undefined;
    let model: SelfRagModel | undefined;
    let worker: EvalWorker | undefined;
    const progress = progressReporter();
    try {
        model = await SelfRagModel.load({
            modelPath, sequences: positive("--sequences", values.sequences) ?? 20,
            contextSize: positive("--context-size", values["context-size"]) ?? 2048, threads: integerOption("--threads", values.threads),
            gpu: values.cpu ? false : "auto", nodeLlamaCpp: false, ...cacheOptions(values)
        });
        worker = await (await import("../distributed/EvalWorker.js")).EvalWorker.start({
            redis, queue: values.queue, model, fingerprint, retriever: index?.asRetriever(), lockDurationMs, stalledIntervalMs,
            onRedis: (event) => progress.redis(event, redis), onProgress: (stats) => progress.update(stats),
            onWarning: (message) => progress.note(`warning: ${message}`)
        });
        console.log(`selfrag: worker on queue ${values.queue ?? DEFAULT_QUEUE} at ${displayUrl(redis)}: ${modelPath} (${fingerprint.slice(0, 19)}...), ` +
            `${model.context.sequences} slots${index != null ? `, ${index.size} passages from ${index.dir}` : ""} (Ctrl-C stops)`);
        let signals = 0;
        const stop = () => {
            signals++;
            progress.note(signals === 1 ? "stopping: finishing the questions held (again to leave them to other workers)"
                : "stopping now: the questions held return to the queue");
            void worker!.close(signals > 1);
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
        try {
            await worker.finished;
        } finally {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
        }
        progress.end(worker.stats);
    } finally {
        await worker?.close();
        await model?.dispose();
        await index?.close();
    }
}

/** The worker's one progress line (rewritten in place on a terminal, every 10 s otherwise) and its notes. */
function progressReporter() {
    const tty = process.stderr.isTTY === true;
    let last = 0;
    let shown = false;
    const line = (s: EvalWorkerStats) => `worker: ${s.answered} answered, ${s.questionsPerSecond.toFixed(2)} questions/s, ${s.active} in hand ` +
        `(up to ${s.concurrency} at once)${s.failed > 0 ? `, ${s.failed} failed attempts` : ""}`;
    const write = (text: string) => {
        process.stderr.write(tty ? `\r\x1b[K${text}` : `${text}\n`);
        shown = tty;
    };
    const note = (text: string) => {
        if (shown) process.stderr.write("\n");
        shown = false;
        process.stderr.write(`selfrag: ${text}\n`);
    };
    return {
        update(s: EvalWorkerStats) {
            if (Date.now() - last < (tty ? 200 : 10_000)) return;
            last = Date.now();
            write(line(s));
        },
        end(s: EvalWorkerStats) {
            write(line(s));
            if (tty) process.stderr.write("\n");
            shown = false;
        },
        note,
        redis(event: RedisEvent, url: string) {
            note(event.kind === "lost" ? `warning: lost Redis at ${displayUrl(url)} (${event.cause}); reconnecting, the questions held are finished meanwhile`
                : `Redis at ${displayUrl(url)} is back`);
        }
    };
}
