// `selfrag eval --redis`: the coordinator's messages around runDistributedEvaluation. A module of
// its own so that BullMQ and ioredis are imported only by distributed runs.
import {runDistributedEvaluation} from "../distributed/Coordinator.js";
import {displayUrl} from "../distributed/redisUrl.js";
import type {EvalSummary, EvaluationOptions} from "../eval/Evaluation.js";

export async function distributedEval(input: string, evaluation: EvaluationOptions,
    options: {redis: string, queue: string | undefined, modelPath: string}): Promise<EvalSummary> {
    const {retriever: _retriever, batchSize: _batchSize, ...rest} = evaluation;
    const note = (text: string) => process.stderr.write(`${process.stderr.isTTY ? "\r\x1b[K" : ""}selfrag: ${text}\n`);
    return runDistributedEvaluation(input, {
        ...rest, ...options,
        onStart: ({run, queue, enqueued, workers}) => {
            note(`run ${run}: ${enqueued} question${enqueued === 1 ? "" : "s"} enqueued on queue ${queue} at ${displayUrl(options.redis)}` +
                (workers === 0 ? `; no worker is connected yet: start \`selfrag worker --redis ${displayUrl(options.redis)}${queue !== "selfrag" ? ` --queue ${queue}` : ""} ` +
                    "--model <the same model>\` on each machine" : workers != null ? `, ${workers} worker${workers === 1 ? "" : "s"} connected` : ""));
        },
        onRedis: (event) => note(event.kind === "lost"
            ? `warning: lost Redis at ${displayUrl(options.redis)} (${event.cause}); waiting for it: the run goes on when it is back`
            : `Redis at ${displayUrl(options.redis)} is back`),
        onWarning: (message) => note(`warning: ${message}`)
    });
}
