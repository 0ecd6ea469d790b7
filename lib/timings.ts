// Start-up phase marks: with SELFRAG_TIMINGS=1 a process prints one line per phase on stderr,
// `selfrag-timing <phase> <ms since the process started>`, so a whole-process benchmark (or a
// user wondering where a cold start goes) sees import, backend, model, context and first decode
// from inside. Without the variable this is a no-op.

const enabled = process.env.SELFRAG_TIMINGS === "1";
const seen = new Set<string>();

/** Prints `selfrag-timing <phase> <ms>` once per phase when SELFRAG_TIMINGS=1 (ms from process start, performance.now()). */
export function markPhase(phase: string, detail?: string): void {
    if (!enabled || seen.has(phase)) return;
    seen.add(phase);
    try {
        process.stderr.write(`selfrag-timing ${phase} ${performance.now().toFixed(1)}${detail != null ? ` ${detail}` : ""}\n`);
    } catch {
        // stderr closed: nothing to report to
    }
}
