// Writing a whole answer: JSON or text with its length, and the error bodies of the plain API.
import type http from "node:http";
import {SelfRagError} from "../errors.js";

export function send(res: http.ServerResponse, status: number, value: unknown): void {
    if (res.headersSent) return;
    const body = JSON.stringify(value) + "\n";
    res.writeHead(status, {"Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body)});
    res.end(body);
}

export function sendText(res: http.ServerResponse, body: string, type: string): void {
    if (res.headersSent) return;
    res.writeHead(200, {"Content-Type": type, "Content-Length": Buffer.byteLength(body)});
    res.end(body);
}

/** Anything thrown, as a SelfRagError: an unexpected one becomes INTERNAL (500) with its message. */
export function asSelfRagError(error: unknown): SelfRagError {
    return error instanceof SelfRagError ? error : new SelfRagError((error as Error)?.message ?? String(error), "INTERNAL");
}

/** The plain API's error body: `{"error": {"code", "message"}}` (OpenAI routes use openAiErrorBody). */
export function errorBody(e: SelfRagError) {
    return {error: {code: e.code, message: e.message}};
}
