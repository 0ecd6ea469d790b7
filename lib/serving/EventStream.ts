import type http from "node:http";
import type {SelfRagError} from "../errors.js";
import {asSelfRagError} from "./replies.js";

/**
 * A `text/event-stream` response (server-sent events). Writes are dropped once the client has
 * gone; `closed` tells the producer to stop.
 */
export class EventStream {
    private ended = false;

    public constructor(private readonly res: http.ServerResponse, headers: Record<string, string> = {}) {
        res.writeHead(200, {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no", // nginx: do not buffer the stream
            ...headers
        });
        res.flushHeaders();
    }

    public get closed(): boolean {
        return this.ended || this.res.destroyed || this.res.writableEnded;
    }

    /** One event: `event: name` (omitted when undefined) and the JSON of `data` (or a raw string). */
    public send(event: string | undefined, data: unknown): void {
        if (this.closed) return;
        const payload = typeof data === "string" ? data : JSON.stringify(data);
        this.res.write(`${event != null ? `event: ${event}\n` : ""}data: ${payload}\n\n`);
    }

    public end(): void {
        if (this.closed) return;
        this.ended = true;
        this.res.end();
    }
}

/** What a lazily opened stream writes besides the events of its producer. */
export interface StreamFraming {
    /** Written as the stream opens (OpenAI's role chunk). */
    opening?: (stream: EventStream) => void;
    /** An error thrown once the stream is open, as its last event(s). */
    failed: (stream: EventStream, error: SelfRagError) => void;
    /** Written after the answer or the error, just before the end (OpenAI's `[DONE]`). */
    closing?: (stream: EventStream) => void;
}

/**
 * Runs `produce` with a stream that opens at its first event, so that an error before anything
 * was sent is thrown as it is (the handler answers it as plain JSON with its status); once open,
 * the status is 200 and an error can only be an event. The stream is ended either way.
 */
export async function streamLazily(res: http.ServerResponse, framing: StreamFraming,
    produce: (open: () => EventStream) => Promise<void>): Promise<void> {
    let events: EventStream | undefined;
    const open = () => {
        if (events == null) {
            events = new EventStream(res);
            framing.opening?.(events);
        }
        return events;
    };
    try {
        await produce(open);
    } catch (error) {
        if (events == null) throw error;
        framing.failed(events, asSelfRagError(error));
    }
    const stream = open();
    framing.closing?.(stream);
    stream.end();
}
