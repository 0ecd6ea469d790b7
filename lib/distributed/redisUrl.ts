// Redis URLs as the CLI takes them, apart from the Redis client so that checking an option does
// not import ioredis (commands import only what they run).
import {invalidParameterError} from "../errors.js";

/** Default BullMQ queue name of `selfrag worker` and `selfrag eval --redis`. */
export const DEFAULT_QUEUE = "selfrag";

/** A redis:// or rediss:// URL, as given to --redis. */
export function checkRedisUrl(url: string | undefined, flag = "--redis"): string {
    let parsed: URL | undefined;
    try {
        parsed = url != null ? new URL(url) : undefined;
    } catch {
        // Nothing lost: an unparsable URL is refused just below with the usage message.
        parsed = undefined;
    }
    if (parsed == null || (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") || parsed.hostname === "") {
        throw invalidParameterError(flag, "a Redis URL, redis://HOST:PORT[/DB] (or rediss:// for TLS)", url);
    }
    return url!;
}

/** The URL without its password, for messages. */
export function displayUrl(url: string): string {
    try {
        const u = new URL(url);
        if (u.password !== "") u.password = "***";
        return u.toString().replace(/\/$/, "");
    } catch {
        // Nothing lost: a string that is not a URL has no password field to hide; it is shown as given.
        return url;
    }
}
