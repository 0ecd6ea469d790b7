// The CLI's error contract, shared by every command: arguments are parsed by `parseCommand`
// (which turns node's parseArgs errors into SelfRagErrors naming the option, and answers
// `--help` / `-h`), and every failure ends as exactly one line `selfrag: <message> [CODE]` on
// stderr with exit code 1 (`reportFailure`).
import {parseArgs, type ParseArgsConfig} from "node:util";
import {SelfRagError, invalidParameterError, nearestName, requireOneOf} from "../errors.js";
import {FLASH_ATTENTION, KV_CACHE_TYPES, type FlashAttention, type KvCacheType} from "../engine/types.js";

type ParseOptions = NonNullable<ParseArgsConfig["options"]>;
type Parsed<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>;

/**
 * parseArgs with the CLI's rules:
 * - `--help` / `-h` prints `help` on stdout and returns undefined (the command then does nothing);
 * - a string option followed by a negative number (`--w-rel -1`) takes it as its value;
 * - unknown options, missing values and unexpected arguments are SelfRagErrors (INVALID_ARGUMENT)
 *   naming the option and the command.
 */
export function parseCommand<T extends ParseArgsConfig>(command: string, help: string | (() => string), config: T): Parsed<T> | undefined {
    const options: ParseOptions = {...config.options, help: {type: "boolean", short: "h"}};
    const args = negativeValuesInline(config.args ?? [], options);
    let parsed: Parsed<T>;
    try {
        parsed = parseArgs({...config, args, options} as T);
    } catch (error) {
        throw parseError(error, command, Object.keys(options));
    }
    if ((parsed.values as {help?: boolean}).help) {
        console.log(typeof help === "function" ? help() : help);
        return undefined;
    }
    return parsed;
}

/** A numeric CLI option; names the flag when the value is not a number. */
export function numberOption(flag: string, value: string | undefined): number | undefined {
    if (value == null) return undefined;
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) throw invalidParameterError(flag, "a number", value);
    return n;
}

export function integerOption(flag: string, value: string | undefined): number | undefined {
    const n = numberOption(flag, value);
    if (n != null && !Number.isInteger(n)) throw invalidParameterError(flag, "an integer", value);
    return n;
}

/** `--opt -1` as `--opt=-1` when --opt takes a value and what follows is a number (parseArgs reads it as an option). */
export function negativeValuesInline(args: readonly string[], options: ParseOptions): string[] {
    const out: string[] = [];
    for (let i = 0; i < args.length; i++) {
        const arg = args[i];
        if (arg === "--") {
            out.push(...args.slice(i));
            break;
        }
        const next = args[i + 1];
        const name = arg.startsWith("--") && !arg.includes("=") ? arg.slice(2) : undefined;
        if (name != null && options[name]?.type === "string" && next != null && /^-(\d|\.\d|Infinity$)/.test(next)) {
            out.push(`${arg}=${next}`);
            i++;
        } else {
            out.push(arg);
        }
    }
    return out;
}

/** node's parseArgs errors (TypeErrors with ERR_PARSE_ARGS_* codes) as one-line SelfRagErrors. */
export function parseError(error: unknown, command: string, known: readonly string[] = []): unknown {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS_")) return error;
    const message = (error as Error).message;
    const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
    const option = quoted.replace(/ <value>$/, "");
    const see = `see \`${command} --help\``;
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
        const near = option.startsWith("--") ? nearestName(option.slice(2), known) : undefined;
        return new SelfRagError(`unknown option ${option} for \`${command}\` (${near != null ? `did you mean --${near}? ` : ""}${see})`,
            "INVALID_ARGUMENT", {cause: error, option});
    }
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
        return new SelfRagError(`unexpected argument "${quoted}": \`${command}\` takes no positional arguments (${see})`, "INVALID_ARGUMENT", {cause: error});
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
        if (/does not take an argument/.test(message)) {
            return new SelfRagError(`option ${option} takes no value (${see})`, "INVALID_ARGUMENT", {cause: error});
        }
        return new SelfRagError(`option ${option} needs a value (write ${option}=VALUE for a value starting with "-"; ${see})`,
            "INVALID_ARGUMENT", {cause: error});
    }
    return new SelfRagError(`${message.split("\n")[0]} (${see})`, "INVALID_ARGUMENT", {cause: error});
}

/** An option given without the option it works with: refused rather than silently ignored. */
export function requireWith(flag: string, given: unknown, required: string, present: boolean, why: string): void {
    if (given == null || given === false || present) return;
    throw new SelfRagError(`${flag} has no effect without ${required} (${why})`, "INVALID_ARGUMENT");
}

/** Two options that do not go together. */
export function refuseTogether(flag: string, given: unknown, other: string, present: boolean, why: string): void {
    if (given == null || given === false || !present) return;
    throw new SelfRagError(`${flag} cannot be used with ${other} (${why})`, "INVALID_ARGUMENT");
}

/** A message on one line: its lines joined, so one failure is one line of stderr. */
export function oneLine(message: string): string {
    const lines = message.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
    return lines.reduce((joined, line) => joined === "" ? line : /[.:;,]$/.test(joined) ? `${joined} ${line}` : `${joined}; ${line}`, "");
}

/** The one stderr line for a failure (plus the stack with SELFRAG_DEBUG=1). */
export function describeFailure(error: unknown): string {
    const debug = process.env.SELFRAG_DEBUG === "1";
    const stack = debug && error instanceof Error && error.stack != null ? `\n${error.stack}` : "";
    if (error instanceof SelfRagError) return `selfrag: ${oneLine(error.message)} [${error.code}]${stack}\n`;
    const message = error instanceof Error ? error.message : String(error);
    return `selfrag: unexpected error: ${oneLine(message) || (error as Error)?.name || "unknown"} [INTERNAL]${stack}\n`;
}

let failed = false;

/** Reports a failure once (later ones, e.g. from cleanup, are dropped) and sets exit code 1. */
export function reportFailure(error: unknown): void {
    process.exitCode = 1;
    if (failed) return;
    failed = true;
    try {
        process.stderr.write(describeFailure(error));
    } catch {
        // stderr closed: nothing more to say
    }
}

/**
 * A closed stdout (`selfrag demo | head -1`) ends the command quietly with exit code 0: the reader
 * has what it wanted. Other stream errors are reported as failures.
 */
export function quietOnClosedStdout(): void {
    process.stdout.on("error", (error: NodeJS.ErrnoException) => {
        if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") process.exit(failed ? 1 : 0);
        reportFailure(error);
        process.exit(1);
    });
    process.stderr.on("error", () => {
        // nowhere left to report to
    });
}

/** The KV cache flags of every command that loads a model for answering (ask, eval, serve, worker, bench). */
export const cacheFlags = {"kv-type": {type: "string"}, "flash-attn": {type: "string"}} as const;

/** The help line of cacheFlags. */
export const CACHE_FLAGS_HELP = "--kv-type f16|q8_0|q4_0 (KV cache cells; q8_0 about half the memory of f16) --flash-attn auto|on|off";

/** cacheFlags as SelfRagModel.load options, refused by flag name (a quantized cache needs flash attention). */
export function cacheOptions(values: {"kv-type"?: string, "flash-attn"?: string}): {kvCacheType?: KvCacheType, flashAttention?: FlashAttention} {
    const kvCacheType = values["kv-type"] == null ? undefined : requireOneOf("--kv-type", values["kv-type"], KV_CACHE_TYPES);
    const flashAttention = values["flash-attn"] == null ? undefined : requireOneOf("--flash-attn", values["flash-attn"], FLASH_ATTENTION);
    if (kvCacheType != null && kvCacheType !== "f16" && flashAttention === "off") {
        throw new SelfRagError(`--kv-type ${kvCacheType} needs flash attention (llama.cpp quantizes the V cache only with it): --flash-attn auto or on`,
            "INVALID_ARGUMENT", {option: "--flash-attn"});
    }
    return {...(kvCacheType != null ? {kvCacheType} : {}), ...(flashAttention != null ? {flashAttention} : {})};
}
