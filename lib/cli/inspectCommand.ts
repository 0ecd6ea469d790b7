import {invalidParameterError} from "../errors.js";
import {REFLECTION_TOKENS} from "../engine/ReflectionTokens.js";
import {SelfRagModel} from "../SelfRagModel.js";
import {CACHE_FLAGS_HELP, cacheFlags, cacheOptions, integerOption, parseCommand} from "./contract.js";
import {formatPrompt} from "../selfrag/prompts.js";

const help = `Usage: selfrag inspect --model FILE (--question TEXT | --prompt TEXT) [--json] [--threads N] [--cpu]

Prints the log-probability of each of the 15 reflection tokens at the next position after the
prompt (BOS added, special tokens such as [Retrieval] parsed) and
p_retrieve = P([Retrieval]) / (P([Retrieval]) + P([No Retrieval])).
  --question TEXT       a question, wrapped in the Self-RAG prompt ("### Instruction:\\n...\\n\\n### Response:\\n")
  --prompt TEXT         the prompt as given, byte for byte; in bash, real newlines need $'...' quoting:
                        --prompt $'### Instruction:\\nWho wrote Hamlet?\\n\\n### Response:\\n'
                        ("\\n" inside plain quotes reaches the model as a backslash and an n)
  ${CACHE_FLAGS_HELP}`;

export async function inspectCommand(args: string[]): Promise<void> {
    const parsed = parseCommand("selfrag inspect", help, {args, options: {
        model: {type: "string"}, prompt: {type: "string"}, question: {type: "string"}, json: {type: "boolean"}, threads: {type: "string"},
        cpu: {type: "boolean"}, ...cacheFlags
    }});
    if (parsed == null) return;
    const {values} = parsed;
    if (values.model == null) throw invalidParameterError("--model", "a GGUF file path", values.model);
    if ((values.prompt == null) === (values.question == null)) {
        throw invalidParameterError("--question / --prompt", "exactly one of a question or a prompt", values.prompt ?? values.question);
    }
    const prompt = values.prompt ?? formatPrompt(values.question!);
    const model = await SelfRagModel.load({
        // One prompt, one row: the context holds that prompt (at most 4096 tokens, as before), not
        // 4096 cells that llama.cpp would clear for nothing.
        modelPath: values.model, sequences: 1, contextSize: 4096, sizeToPrompt: prompt,
        threads: integerOption("--threads", values.threads), gpu: values.cpu ? false : "auto", nodeLlamaCpp: false, ...cacheOptions(values)
    });
    try {
        const result = await model.inspect(prompt);
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
