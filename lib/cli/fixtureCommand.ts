import {invalidParameterError} from "../errors.js";
import {FIXTURE_QUANTS, writeFixtureModel, type FixtureKind, type FixtureQuant} from "../fixtures/FixtureModel.js";
import {parseCommand} from "./contract.js";

const KINDS: readonly FixtureKind[] = ["tiny", "bench", "1b"];

const help = `Usage: selfrag fixture --out FILE [--kind tiny|bench|1b] [--quant q4_0|q8_0|f16|f32]

Writes a GGUF model with the real Llama-2 tokenizer plus the 16 Self-RAG tokens (ids 32000..32015).
  tiny   designed weights (16 MB) whose reflection behaviour is known by construction:
         "capital" in the question asks for retrieval, "Paris" in a passage makes it [Relevant].
  bench  random weights, about 53M parameters (210 MB, f32), for speed measurements.
  1b     random weights of TinyLlama 1.1B's shape (2048 wide, 22 layers, 32 heads, 4 KV heads,
         FFN 5632; 1.1B parameters), for benchmarks on a realistic shape. --quant sets the format
         of its matrices: q4_0 (default, 0.6 GB), q8_0 (1.2 GB), f16 (2.2 GB) or f32 (4.4 GB),
         quantized exactly as llama.cpp's reference quantizer does.
None is a language model: use them to test and benchmark, not to answer questions.`;

export async function fixtureCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag fixture", help, {args, options: {out: {type: "string"}, kind: {type: "string", default: "tiny"},
        quant: {type: "string"}}});
    if (parsed == null) return;
    const {values} = parsed;
    if (values.out == null) throw invalidParameterError("--out", "an output file path", values.out);
    if (!KINDS.includes(values.kind as FixtureKind)) throw invalidParameterError("--kind", KINDS.map((k) => `"${k}"`).join(", "), values.kind);
    const kind = values.kind as FixtureKind;
    if (values.quant != null) {
        if (kind !== "1b") throw invalidParameterError("--quant", `no --quant for --kind ${kind} (f32 only; --quant is for --kind 1b)`, values.quant);
        if (!FIXTURE_QUANTS.includes(values.quant as FixtureQuant)) {
            throw invalidParameterError("--quant", FIXTURE_QUANTS.map((q) => `"${q}"`).join(", "), values.quant);
        }
    }
    const started = Date.now();
    await writeFixtureModel(values.out, kind, {quant: values.quant as FixtureQuant | undefined});
    const quant = kind === "1b" ? ` (${values.quant ?? "q4_0"})` : "";
    console.error(`wrote ${kind} fixture model${quant} to ${values.out} in ${Date.now() - started} ms`);
}
