// Server-sent events: one stream class and the one way a route opens it (streamLazily), shared
// by /v1/answer and the OpenAI routes. Besides events it carries the transport's mechanics:
//   - keep-alive comments (`: keep-alive`) while nothing else is written, so a request waiting
//     for slots shows bytes at once and no proxy or client times it out;
//   - optionally event ids and a final event: numbered ids, then `id: end` with a long `retry:`
//     on the last event, so a client that reconnects after the answer (EventSource, the
//     `eventsource` package, fetch-event-source; they re-send the request with `Last-Event-ID`)
//     waits long and then gets 204, which tells it to stop, instead of the work done again.
import type http from "node:http";
import type {SelfRagError} from "../errors.js";
import {asSelfRagError} from "./replies.js";

/** The id of a stream's last event; a request sending it back as `Last-Event-ID` is a reconnect after the end. */
export const FINAL_EVENT_ID = "end";
/** The reconnection delay the final event asks for (a day): a client left open does not come back soon. */
export const FINAL_RETRY_MS = 24 * 60 * 60 * 1000;
/** Default interval of keep-alive comments. */
export const KEEP_ALIVE_MS = 5_000;

export interface EventStreamOptions {
    /** Extra response headers. */
    headers?: Record<string, string>;
    /** A `: keep-alive` comment whenever nothing was written for this long (ms; 0: none). */
    keepAliveMs?: number;
    /** Number the events (`id: 1`, `id: 2` ...); the final one is `id: end` (see FINAL_EVENT_ID). */
    ids?: boolean;
}

/**
 * A `text/event-stream` response (server-sent events). Writes are dropped once the client has
 * gone; `closed` tells the producer to stop.
 */
export class EventStream {
    private ended = false;
    private sent = 0;
    private wrote = false;
    private readonly keepAlive?: NodeJS.Timeout;
    private readonly ids: boolean;

    public constructor(private readonly res: http.ServerResponse, options: EventStreamOptions = {}) {
        res.writeHead(200, {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no", // nginx: do not buffer the stream
            ...options.headers
        });
        res.flushHeaders();
        this.ids = options.ids ?? false;
        const every = options.keepAliveMs ?? 0;
        if (every > 0) {
            this.keepAlive = setInterval(() => {
                if (this.closed) return this.stop();
                if (!this.wrote) this.comment("keep-alive");
                this.wrote = false;
            }, every);
            this.keepAlive.unref();
            res.once("close", () => this.stop());
        }
    }

    public get closed(): boolean {
        return this.ended || this.res.destroyed || this.res.writableEnded;
    }

    /**
     * One event: `event: name` (omitted when undefined) and the JSON of `data` (or a raw string).
     * `final`: the stream's last event (with ids: `id: end` and a long `retry:`).
     */
    public send(event: string | undefined, data: unknown, options: {final?: boolean} = {}): void {
        if (this.closed) return;
        const payload = typeof data === "string" ? data : JSON.stringify(data);
        let id = "";
        if (this.ids) id = options.final ? `id: ${FINAL_EVENT_ID}\nretry: ${FINAL_RETRY_MS}\n` : `id: ${++this.sent}\n`;
        this.write(`${id}${event != null ? `event: ${event}\n` : ""}data: ${payload}\n\n`);
    }

    /** A comment line (`: text`), which every client skips. */
    public comment(text: string): void {
        if (this.closed) return;
        this.write(`: ${text}\n\n`);
    }

    public end(): void {
        this.stop();
        if (this.closed) return;
        this.ended = true;
        this.res.end();
    }

    private write(text: string): void {
        this.wrote = true;
        this.res.write(text);
    }

    private stop(): void {
        if (this.keepAlive != null) clearInterval(this.keepAlive);
    }
}

/**
 * A request that reconnects to a stream which had ended: its `Last-Event-ID` is the final id.
 * Answer it with `endedStreamReply` instead of doing the work again.
 */
export function isReconnectAfterEnd(req: http.IncomingMessage): boolean {
    return req.headers["last-event-id"] === FINAL_EVENT_ID;
}

/** 204 No Content: the HTML standard's way to tell an EventSource not to reconnect again. */
export function endedStreamReply(res: http.ServerResponse): void {
    res.writeHead(204, {"Cache-Control": "no-cache"});
    res.end();
}

/** What a lazily opened stream writes besides the events of its producer, and how. */
export interface StreamFraming {
    /** Written as the stream opens (OpenAI's role chunk). */
    opening?: (stream: EventStream) => void;
    /** An error thrown once the stream is open, as its last event(s). */
    failed: (stream: EventStream, error: SelfRagError) => void;
    /** Written after the answer or the error, just before the end (OpenAI's `[DONE]`). */
    closing?: (stream: EventStream) => void;
    /** Keep-alive comments, ms (default KEEP_ALIVE_MS; 0: none). */
    keepAliveMs?: number;
    /** Event ids and a final event (see EventStream). */
    ids?: boolean;
}

/** What a producer gets: `open()` opens the stream (at most once) and returns it. */
export type OpenStream = () => EventStream;

/**
 * Runs `produce` with a stream that opens at its first event, or soon after `admitted()` is
 * called (the scheduler took the request; it may now wait for slots, with keep-alive comments
 * meanwhile), so that an error found before (a bad field, QUEUE_FULL, a prompt that does not
 * fit) is thrown as it is and the handler answers it as plain JSON with its status; once open,
 * the status is 200 and an error can only be an event. The stream is ended either way.
 */
export async function streamLazily(res: http.ServerResponse, framing: StreamFraming,
    produce: (open: OpenStream, admitted: () => void) => Promise<void>): Promise<void> {
    let events: EventStream | undefined;
    let settled = false;
    const open = () => {
        if (events == null) {
            events = new EventStream(res, {keepAliveMs: framing.keepAliveMs ?? KEEP_ALIVE_MS, ids: framing.ids});
            framing.opening?.(events);
        }
        return events;
    };
    // One turn of the event loop later: errors the flow finds before it first waits (the plan,
    // the prompt fit, the slots it needs) still get their own status.
    const admitted = () => void setImmediate(() => {
        if (!settled && !res.destroyed) open();
    });
    try {
        await produce(open, admitted);
    } catch (error) {
        if (events == null) throw error;
        framing.failed(events, asSelfRagError(error));
    } finally {
        settled = true;
    }
    const stream = open();
    framing.closing?.(stream);
    stream.end();
}
