import {invalidParameterError} from "../errors.js";
import {REFLECTION_TOKENS} from "../engine/ReflectionTokens.js";
import {SelfRagModel} from "../SelfRagModel.js";
import {parseCommand} from "./contract.js";
import {integerOption} from "./options.js";

const help = `Usage: selfrag inspect --model FILE --prompt TEXT [--json] [--threads N] [--cpu]

Prints the log-probability of each of the 15 reflection tokens at the next position after TEXT
(BOS added, special tokens such as [Retrieval] parsed) and
p_retrieve = P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])).
The prompt is used as given: wrap a question yourself, e.g.
  "### Instruction:\\nWho wrote Hamlet?\\n\\n### Response:\\n"`;

export async function inspectCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag inspect", help, {args, options: {
        model: {type: "string"}, prompt: {type: "string"}, json: {type: "boolean"}, threads: {type: "string"},
        cpu: {type: "boolean"}
    }});
    if (parsed == null) return;
    const {values} = parsed;
    if (values.model == null) throw invalidParameterError("--model", "a GGUF file path", values.model);
    if (values.prompt == null) throw invalidParameterError("--prompt", "the prompt text", values.prompt);
    const model = await SelfRagModel.load({
        modelPath: values.model, sequences: 1, contextSize: 4096,
        threads: integerOption("--threads", values.threads), gpu: values.cpu ? false : "auto"
    });
    try {
        const result = await model.inspect(values.prompt);
        if (values.json) {
            console.log(JSON.stringify({...result, model: values.model, backend: model.backend}));
            return;
        }
        console.log(`prompt: ${result.promptTokens} tokens   backend: ${model.backend}`);
        console.log(`p_retrieve: ${result.p_retrieve.toFixed(6)}`);
        console.log(`next token: ${JSON.stringify(result.next.text)} (id ${result.next.id}, log-prob ${result.next.logprob.toFixed(4)})`);
        console.log("reflection log-probs:");
        for (const token of REFLECTION_TOKENS) {
            const logprob = result.reflection[token.text];
            console.log(`  ${token.text.padEnd(30)} ${logprob.toFixed(4).padStart(10)}   p=${Math.exp(logprob).toExponential(3)}`);
        }
    } finally {
        await model.dispose();
    }
}
