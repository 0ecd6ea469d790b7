import type http from "node:http";

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
