// What an ELF shared object carries for the GPU: its .nv_fatbin section, parsed into entries
// (kind ELF = a cubin for one sm_XX, PTX = code the driver compiles for later GPUs), so a test can
// see what nvcc put into the cuda variant without CUDA's own tools (cuobjdump is not installed).
import fs from "node:fs";

export interface FatbinEntry {
    kind: "ptx" | "elf" | "unknown";
    /** Compute capability as nvcc numbers it: 75, 80, 86, 89, 90 ... */
    arch: number;
    payloadBytes: number;
}

const FATBIN_MAGIC = 0xba55ed50;

function section(file: Buffer, wanted: string): Buffer | undefined {
    if (file.readUInt32BE(0) !== 0x7f454c46 || file[4] !== 2 || file[5] !== 1) throw new Error("not a little-endian ELF64 file");
    const shoff = Number(file.readBigUInt64LE(0x28));
    const shentsize = file.readUInt16LE(0x3a);
    const shnum = file.readUInt16LE(0x3c);
    const shstrndx = file.readUInt16LE(0x3e);
    const header = (i: number) => shoff + i * shentsize;
    const strings = Number(file.readBigUInt64LE(header(shstrndx) + 24));
    for (let i = 0; i < shnum; i++) {
        const nameOffset = file.readUInt32LE(header(i));
        const end = file.indexOf(0, strings + nameOffset);
        if (file.toString("latin1", strings + nameOffset, end) !== wanted) continue;
        const offset = Number(file.readBigUInt64LE(header(i) + 24));
        const size = Number(file.readBigUInt64LE(header(i) + 32));
        return file.subarray(offset, offset + size);
    }
    return undefined;
}

/** The fat binary entries of a shared object, or undefined when it has no .nv_fatbin section. */
export function fatbinEntries(file: string): FatbinEntry[] | undefined {
    const data = section(fs.readFileSync(file), ".nv_fatbin");
    if (data == null) return undefined;
    const entries: FatbinEntry[] = [];
    let at = 0;
    while (at + 16 <= data.length) {
        if (data.readUInt32LE(at) !== FATBIN_MAGIC) {
            at += 8; // fat binaries of several translation units follow each other, 8-byte aligned
            continue;
        }
        const headerSize = data.readUInt16LE(at + 6);
        const fatSize = Number(data.readBigUInt64LE(at + 8));
        let entry = at + headerSize;
        const end = entry + fatSize;
        while (entry + 32 <= end) {
            const kind = data.readUInt16LE(entry);
            const entryHeader = data.readUInt32LE(entry + 4);
            const payload = Number(data.readBigUInt64LE(entry + 8));
            entries.push({kind: kind === 1 ? "ptx" : kind === 2 ? "elf" : "unknown", arch: data.readUInt32LE(entry + 28), payloadBytes: payload});
            entry += entryHeader + payload;
        }
        at = end;
    }
    return entries;
}
