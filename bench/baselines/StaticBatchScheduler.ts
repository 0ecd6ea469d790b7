// The batching policy selfrag had before continuous batching, re-implemented on today's engine so
// the serving bench can measure both in one process and one run: requests are grouped by kind and
// options (JSON), one group runs at a time, and inside it questions run in waves that fit the
// slots, each wave waiting for its slowest question. A request that arrives while a group runs
// waits for the whole group. (The engine below it decodes each wave in shared steps, as before.)
import type {LongFormOptions, LongFormQuestion} from "../../lib/selfrag/LongForm.js";
import type {ShortFormOptions, ShortFormQuestion} from "../../lib/selfrag/ShortForm.js";
import type {SelfRagModel} from "../../lib/SelfRagModel.js";

type Pending = {
    kind: "short" | "long";
    question: ShortFormQuestion | LongFormQuestion;
    options: ShortFormOptions | LongFormOptions;
    key: string;
    resolve: (value: unknown) => void;
    reject: (error: unknown) => void;
};

export class StaticBatchScheduler {
    private readonly queue: Pending[] = [];
    private running = false;

    public constructor(private readonly model: SelfRagModel, private readonly maxBatch = 32) {}

    /** Requests not yet started. */
    public get pending(): number {
        return this.queue.length;
    }

    public answer(question: ShortFormQuestion, options: ShortFormOptions): Promise<unknown> {
        return this.enqueue("short", question, options);
    }

    public answerLong(question: LongFormQuestion, options: LongFormOptions): Promise<unknown> {
        return this.enqueue("long", question, options);
    }

    private enqueue(kind: Pending["kind"], question: Pending["question"], options: Pending["options"]): Promise<unknown> {
        return new Promise((resolve, reject) => {
            this.queue.push({kind, question, options, key: kind + JSON.stringify(options), resolve, reject});
            queueMicrotask(() => this.pump());
        });
    }

    private pump(): void {
        if (this.running || this.queue.length === 0) return;
        const head = this.queue[0];
        const group: Pending[] = [];
        for (let i = 0; i < this.queue.length && group.length < this.maxBatch;) {
            if (this.queue[i].key === head.key) group.push(...this.queue.splice(i, 1));
            else i++;
        }
        this.running = true;
        void this.runGroup(group).finally(() => {
            this.running = false;
            setImmediate(() => this.pump());
        });
    }

    private async runGroup(group: Pending[]): Promise<void> {
        const first = group[0];
        const options = first.options as ShortFormOptions & LongFormOptions;
        const ndocs = options.ndocs ?? 5;
        const width = first.kind === "short" ? ndocs : (options.beamWidth ?? 2) * ndocs;
        const perWave = Math.max(1, Math.floor(this.model.context.sequences / width));
        for (let start = 0; start < group.length; start += perWave) {
            const wave = group.slice(start, start + perWave);
            await Promise.all(wave.map(async (p) => {
                try {
                    p.resolve(p.kind === "short"
                        ? await this.model.answer(p.question as ShortFormQuestion, p.options as ShortFormOptions)
                        : await this.model.answerLong(p.question as LongFormQuestion, p.options as LongFormOptions));
                } catch (error) {
                    p.reject(error);
                }
            }));
        }
    }
}
