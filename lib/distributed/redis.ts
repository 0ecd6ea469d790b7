// Connections to the Redis that holds a distributed run's queue. BullMQ needs
// `maxRetriesPerRequest: null` (its blocking commands must wait through a reconnect), so once a
// run is going a lost Redis only pauses it: ioredis reconnects (every 0.1-2 s) and the queued
// commands go through when Redis is back. At start, though, an unreachable Redis is a clear error
// rather than a silent wait: `checkRedis` connects once with a time limit and PINGs.
import {Redis} from "ioredis";
import {SelfRagError} from "../errors.js";
import {displayUrl} from "./redisUrl.js";

/**
 * Connects once and PINGs, within `timeoutMs` (5 s): REDIS_UNAVAILABLE naming the URL and the
 * cause when Redis cannot be reached, instead of a process that waits forever.
 */
export async function checkRedis(url: string, timeoutMs = 5000): Promise<void> {
    const client = new Redis(url, {lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, enableOfflineQueue: false, disconnectTimeout: 100,
        retryStrategy: () => null});
    let cause: NodeJS.ErrnoException | undefined;
    client.on("error", (error: NodeJS.ErrnoException) => {
        cause ??= error; // the socket's error (ECONNREFUSED ...); connect() rejects with "Connection is closed"
    });
    let timer: NodeJS.Timeout | undefined;
    try {
        const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        });
        await Promise.race([client.connect().then(() => client.ping()), timeout]);
    } catch (error) {
        const e = cause ?? error as NodeJS.ErrnoException;
        const what = /RESP|Protocol error/i.test(e.message) ? "the server there does not speak the Redis protocol (another service on that port?)"
            : `${e.code ?? e.message} (is redis-server running there? start it, or pass --redis redis://HOST:PORT)`;
        throw new SelfRagError(`cannot reach Redis at ${displayUrl(url)}: ${what}`, "REDIS_UNAVAILABLE", {cause: error});
    } finally {
        clearTimeout(timer);
        client.disconnect();
    }
}

export type RedisEvent = {kind: "lost", cause: string} | {kind: "back"};

// (One string: these are socket errnos, not selfrag error codes.)
const CONNECTION_CODES = new Set("ECONNREFUSED ECONNRESET ETIMEDOUT EPIPE ENOTFOUND EHOSTUNREACH ENETUNREACH EAI_AGAIN".split(" "));

/** A lost or refused connection (ioredis, sockets), as opposed to an error of a command or a job. */
export function isConnectionError(error: unknown): boolean {
    const e = error as NodeJS.ErrnoException | undefined;
    return (e?.code != null && CONNECTION_CODES.has(e.code)) || /Connection is closed|connect ECONN|Stream isn't writeable|LOADING/i.test(e?.message ?? "");
}

/**
 * A connection for BullMQ (Queue, Worker) that reconnects forever, reporting each outage once:
 * `lost` at the first failure, `back` when it is ready again.
 */
export function redisConnection(url: string, onEvent?: (event: RedisEvent) => void): RedisConnection {
    const client = new Redis(url, {maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy: (times) => Math.min(100 * times, 2000)});
    let lost = false;
    let closing = false;
    const noteError = (error: unknown) => {
        if (lost || closing) return;
        lost = true;
        const e = error as NodeJS.ErrnoException | undefined;
        onEvent?.({kind: "lost", cause: e?.code ?? e?.message ?? String(error)});
    };
    client.on("error", noteError);
    client.on("close", () => {
        noteError(new Error("connection closed"));
    });
    client.on("ready", () => {
        if (!lost) return;
        lost = false;
        onEvent?.({kind: "back"});
    });
    return {
        client,
        onBullError: (other) => (error) => isConnectionError(error) ? noteError(error) : other(error),
        close: async () => {
            closing = true;
            // QUIT waits for Redis; when it is gone, drop the connection instead of waiting for it.
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => {
                timer = setTimeout(resolve, 1000);
            })]);
            clearTimeout(timer);
            client.disconnect();
        }
    };
}

export interface RedisConnection {
    client: Redis;
    /**
     * For BullMQ's `error` events: a connection error (of a connection BullMQ made from this one,
     * say) reports the outage; any other error goes to `other`.
     */
    onBullError: (other: (error: Error) => void) => (error: Error) => void;
    /** QUIT (or drop the connection when Redis is gone); no outage is reported after this. */
    close: () => Promise<void>;
}
