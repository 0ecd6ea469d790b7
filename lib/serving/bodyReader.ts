// Reading a request body: JSON up to a size limit, refused past it without being buffered; and
// the lingering close that answers an early rejection and then drains the rest of the body.
import type http from "node:http";
import {SelfRagError} from "../errors.js";

/**
 * The body as JSON (an object, an array or a scalar: the routes check the shape). The contract,
 * as llama-server's: JSON is read whatever the declared type, since `curl -d` declares a form
 * (application/x-www-form-urlencoded) and many tools send text/plain or nothing. A body declared
 * as JSON (application/json, *+json), as text/plain or undeclared that does not parse is 400
 * INVALID_JSON; a body declared as something else (a form, XML ...) is 415 UNSUPPORTED_MEDIA_TYPE
 * unless it parses as JSON (or starts like JSON: then a parse error is 400 INVALID_JSON);
 * multipart is 415 before it is read.
 */
export async function readJson(req: http.IncomingMessage & {body?: unknown}, maxBodyBytes: number): Promise<unknown> {
    // A framework's body parser (express.json()) may have read it already.
    if (req.body !== undefined && (req.readableEnded || req.body !== null && typeof req.body === "object" && !Buffer.isBuffer(req.body))) {
        return req.body;
    }
    const type = mediaType(req.headers["content-type"]);
    if (type != null && type.startsWith("multipart/")) {
        throw new SelfRagError(`the body must be JSON (Content-Type: application/json), not ${type}`, "UNSUPPORTED_MEDIA_TYPE");
    }
    const declared = Number(req.headers["content-length"] ?? NaN);
    if (declared > maxBodyBytes) {
        throw new SelfRagError(`the body is ${declared} bytes; the limit is ${maxBodyBytes}`, "PAYLOAD_TOO_LARGE");
    }
    const text = (await readBody(req, maxBodyBytes)).toString("utf8");
    if (text.trim() === "") throw new SelfRagError("the body is empty; send a JSON object", "INVALID_REQUEST");
    try {
        return JSON.parse(text);
    } catch (error) {
        // text/plain counts as undeclared: fetch and XMLHttpRequest label a string body so by default.
        const declaredJson = type == null || type === "application/json" || type.endsWith("+json") || type === "text/plain";
        if (!declaredJson && !/^\s*[{[]/.test(text)) {
            throw new SelfRagError(`the body is ${type}, not JSON: send a JSON object (Content-Type: application/json)`, "UNSUPPORTED_MEDIA_TYPE");
        }
        throw new SelfRagError(`the body is not valid JSON: ${(error as Error).message}`, "INVALID_JSON");
    }
}

/** The media type of a Content-Type header, lower case without parameters (undefined when absent or blank). */
function mediaType(header: string | undefined): string | undefined {
    const type = header?.split(";")[0].trim().toLowerCase();
    return type === "" ? undefined : type;
}

/**
 * The body, up to `max` bytes. Past the limit it stops listening and leaves the request paused
 * but open (a `for await` loop would destroy it, and with it the socket the answer goes out on).
 */
export function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const done = () => {
            req.off("data", onData);
            req.off("end", onEnd);
            req.off("close", onClose);
            req.off("error", onClose);
        };
        const onData = (chunk: Buffer) => {
            size += chunk.length;
            if (size > max) {
                done();
                req.pause();
                reject(new SelfRagError(`the body is over ${max} bytes, the limit`, "PAYLOAD_TOO_LARGE"));
            } else {
                chunks.push(chunk);
            }
        };
        const onEnd = () => {
            done();
            resolve(Buffer.concat(chunks));
        };
        const onClose = () => {
            done();
            reject(new SelfRagError("the client closed the connection while sending the body", "ABORTED"));
        };
        req.on("data", onData);
        req.on("end", onEnd);
        req.on("close", onClose);
        req.on("error", onClose);
    });
}

/** How much of an unread body a lingering close reads and discards before resetting instead. */
export interface DrainLimits {
    maxBytes: number;
    timeoutMs: number;
}

/**
 * A lingering close, as Apache and nginx do, for an answer given before the body was read (413,
 * 404, 405, 415 ...). Closing at once would reset a connection the client is still writing to,
 * and a client that reads its answer only after sending (Node's fetch) would see ECONNRESET
 * instead of the answer. So: the whole answer is written at once (`Connection: close`,
 * Content-Length), for a client that reads while sending; then the rest of the body is read and
 * discarded, and the response ended (which closes the connection) once the body is in, for a
 * client that reads only after sending. Past `maxBytes` or `timeoutMs` of draining the connection
 * is reset instead.
 */
export function answerThenDrain(req: http.IncomingMessage, res: http.ServerResponse, status: number, value: unknown,
    limits: DrainLimits): void {
    const body = JSON.stringify(value) + "\n";
    res.shouldKeepAlive = false;
    res.writeHead(status, {"Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body), "Connection": "close"});
    res.write(body);
    let drained = 0;
    let settled = false;
    const finish = (reset: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.off("data", onData);
        req.off("end", onEnd);
        req.off("close", onGone);
        req.off("error", onGone);
        if (reset) {
            // Flushed answer first, then the reset (the client may still lose it: documented).
            res.end(() => req.socket?.destroy());
            req.pause();
        } else {
            res.end(); // Connection: close ends the socket once the answer is flushed
        }
    };
    const onData = (chunk: Buffer) => {
        drained += chunk.length;
        if (drained > limits.maxBytes) finish(true);
    };
    const onEnd = () => finish(false);
    const onGone = () => finish(false);
    const timer = setTimeout(() => finish(true), limits.timeoutMs);
    timer.unref();
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("close", onGone);
    req.on("error", onGone);
    req.resume();
}
