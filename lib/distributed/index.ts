// `selfrag/distributed`: evaluation and batch answering spread over machines with BullMQ on Redis.
// A subpath of its own, so that importing `selfrag` does not load BullMQ, ioredis or msgpackr.
export {runDistributedEvaluation, type DistributedEvaluationOptions, type DistributedSummary} from "./Coordinator.js";
export {EvalWorker, type EvalWorkerOptions, type EvalWorkerStats} from "./EvalWorker.js";
export {modelFingerprint} from "./fingerprint.js";
export {jobId, runId, slotsPerQuestion, type AnswerJobData, type AnswerJobResult, type RunSettings} from "./jobs.js";
export {checkRedis, type RedisEvent} from "./redis.js";
export {DEFAULT_QUEUE} from "./redisUrl.js";
