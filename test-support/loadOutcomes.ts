// Child process for the file-fault tests: loads each model file given on the command line and
// prints, as one JSON array, whether it loaded or which coded error it gave. A crash (abort,
// segfault) of llama.cpp on a damaged file shows up as this process dying instead.
import {SelfRagError} from "../lib/errors.js";
import {SelfRagModel} from "../lib/SelfRagModel.js";

const outcomes: {file: string, outcome: string, code?: string, message?: string}[] = [];
for (const file of process.argv.slice(2)) {
    try {
        const model = await SelfRagModel.load({modelPath: file, contextSize: 64, sequences: 1, gpu: false});
        await model.dispose();
        outcomes.push({file, outcome: "loaded"});
    } catch (error) {
        outcomes.push(error instanceof SelfRagError
            ? {file, outcome: "error", code: error.code, message: error.message.slice(0, 300)}
            : {file, outcome: "uncoded", message: String(error).slice(0, 300)});
    }
}
process.stdout.write(JSON.stringify(outcomes) + "\n");
