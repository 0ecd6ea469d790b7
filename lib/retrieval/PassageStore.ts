import type Database from "better-sqlite3";
import fs from "node:fs";
import {createRequire} from "node:module";
import {SelfRagError} from "../errors.js";
import type {Passage} from "../selfrag/prompts.js";

const requireModule = createRequire(import.meta.url);
let sqlite: typeof Database | undefined;

/** better-sqlite3, loaded when a store is first created or opened: importing selfrag loads no native module. */
function database(): typeof Database {
    return sqlite ??= requireModule("better-sqlite3") as typeof Database;
}

/** A passage as stored: the corpus's own id (if it had one), its USearch key and its metadata. */
export interface StoredPassage extends Passage {
    /** The row id in SQLite and the key of the passage's vector in USearch. */
    key: number;
    metadata?: Record<string, unknown>;
}

/**
 * The passages of an index in SQLite (through better-sqlite3), one row per passage keyed by the
 * USearch key, so a search result turns into text with one primary-key lookup per hit. The corpus
 * ids are kept as they were (DPR's "1".."21015324", or any string), in their own column.
 *
 * ```ts
 * const store = PassageStore.open("index/passages.sqlite");
 * const [first] = store.get([1]);  // {key: 1, id: "1", title: "Aaron", text: "Aaron Aaron ( or ; ..."}
 * store.close();
 * ```
 */
export class PassageStore {
    private readonly select: Database.Statement<[number], {key: number, id: string | null, title: string, text: string, metadata: string | null}>;

    private insertStatement?: Database.Statement;

    private constructor(private readonly db: Database.Database, private readonly file: string) {
        this.select = db.prepare("SELECT key, id, title, text, metadata FROM passages WHERE key = ?");
    }

    /**
     * A new store for a build. Journaling and syncing are off: the build writes into a temporary
     * directory that is renamed only once complete, so a crash leaves nothing to recover, and
     * bulk inserts run several times faster.
     */
    public static create(file: string): PassageStore {
        if (fs.existsSync(file)) fs.rmSync(file);
        const db = new (database())(file);
        db.pragma("journal_mode = OFF");
        db.pragma("synchronous = OFF");
        db.pragma("locking_mode = EXCLUSIVE");
        db.exec("CREATE TABLE passages (key INTEGER PRIMARY KEY, id TEXT, title TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT)");
        return new PassageStore(db, file);
    }

    /** An existing store, read-only (many processes can read one index). */
    public static open(file: string): PassageStore {
        if (!fs.existsSync(file)) throw new SelfRagError(`passage store not found: ${file}`, "INDEX_CORRUPT");
        let db: Database.Database;
        try {
            db = new (database())(file, {readonly: true, fileMustExist: true});
            db.pragma("mmap_size = 268435456"); // reads through the page cache instead of copies
            return new PassageStore(db, file);
        } catch (error) {
            throw new SelfRagError(`cannot open the passage store ${file}: ${(error as Error).message}`, "INDEX_CORRUPT", {cause: error});
        }
    }

    /** Inserts passages under consecutive keys from `firstKey`, in one transaction. */
    public insert(items: readonly {passage: Passage, metadata?: Record<string, unknown>}[], firstKey: number): void {
        const statement = this.insertStatement ??= this.db.prepare("INSERT INTO passages (key, id, title, text, metadata) VALUES (?, ?, ?, ?, ?)");
        this.db.transaction(() => {
            items.forEach(({passage, metadata}, i) => {
                statement.run(firstKey + i, passage.id ?? null, passage.title, passage.text, metadata == null ? null : JSON.stringify(metadata));
            });
        })();
    }

    /** The passages under `keys`, in the same order; undefined for a key with no row. */
    public get(keys: readonly number[]): (StoredPassage | undefined)[] {
        return keys.map((key) => {
            // A damaged file opens fine and fails on the page a lookup reads: name the file.
            let row: {key: number, id: string | null, title: string, text: string, metadata: string | null} | undefined;
            try {
                row = this.select.get(key);
            } catch (error) {
                throw new SelfRagError(`the passage store ${this.file} is damaged (reading passage ${key}): ${(error as Error).message}`,
                    "INDEX_CORRUPT", {cause: error});
            }
            if (row == null) return undefined;
            const passage: StoredPassage = {key: row.key, id: row.id ?? undefined, title: row.title, text: row.text};
            if (row.metadata != null) {
                try {
                    passage.metadata = JSON.parse(row.metadata) as Record<string, unknown>;
                } catch (error) {
                    throw new SelfRagError(`the passage store ${this.file} is damaged: passage ${key} has unreadable metadata`, "INDEX_CORRUPT",
                        {cause: error});
                }
            }
            return passage;
        });
    }

    public count(): number {
        return (this.db.prepare("SELECT count(*) AS n FROM passages").get() as {n: number}).n;
    }

    public close(): void {
        if (this.db.open) this.db.close();
    }

    public toString(): string {
        return `PassageStore(${this.file})`;
    }
}
