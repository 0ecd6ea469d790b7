import {invalidParameterError} from "../errors.js";
import {writeFixtureModel, type FixtureKind} from "../fixtures/FixtureModel.js";
import {parseCommand} from "./contract.js";

const help = `Usage: selfrag fixture --out FILE [--kind tiny|bench]

Writes a GGUF model with the real Llama-2 tokenizer plus the 16 Self-RAG tokens (ids 32000..32015).
  tiny   designed weights (16 MB) whose reflection behaviour is known by construction:
         "capital" in the question asks for retrieval, "Paris" in a passage makes it [Relevant].
  bench  random weights, about 53M parameters (210 MB), for speed measurements.
Neither is a language model: use them to test and benchmark, not to answer questions.`;

export async function fixtureCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag fixture", help, {args, options: {out: {type: "string"}, kind: {type: "string", default: "tiny"}}});
    if (parsed == null) return;
    const {values} = parsed;
    if (values.out == null) throw invalidParameterError("--out", "an output file path", values.out);
    if (values.kind !== "tiny" && values.kind !== "bench") throw invalidParameterError("--kind", `"tiny" or "bench"`, values.kind);
    const started = Date.now();
    await writeFixtureModel(values.out, values.kind as FixtureKind);
    console.error(`wrote ${values.kind} fixture model to ${values.out} in ${Date.now() - started} ms`);
}
