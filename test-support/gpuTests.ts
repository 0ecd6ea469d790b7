// npm run test:gpu: the CUDA kernels on a real device (test/gpu/), for a machine with a GPU.
// Loading the cuda variant needs NVIDIA's driver (libcuda) and a device; a child process tries
// it first, so a machine without one gets one clear "no CUDA device" line instead of a crash, and
// nothing is reported as passed.
import {spawnSync} from "node:child_process";
import path from "node:path";
import {fileURLToPath} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");

const probe = spawnSync(process.execPath, ["--input-type=module", "-e", `
    import {loadAddon} from ${JSON.stringify(path.join(root, "dist", "lib", "engine", "addon.js"))};
    try {
        const {addon, variant} = await loadAddon({gpu: "cuda"});
        console.log(JSON.stringify({variant, ...addon.cudaDevice()}));
    } catch (error) {
        console.log(JSON.stringify({loadError: error.message.split("\\n")[0]}));
    }`], {encoding: "utf8", timeout: 120_000});
let device: {loadError?: string, variant: string, built: boolean, available: boolean, name: string, computeCapability: string, archs: string, reason: string} | undefined;
try {
    device = JSON.parse(probe.stdout.trim().split("\n").at(-1) ?? "");
} catch {
    device = undefined;
}
if (device == null) {
    const why = (probe.stderr || probe.stdout).trim().split("\n").filter((l) => l.trim() !== "").slice(-3).join(" / ");
    console.log(`test:gpu: no CUDA device: the cuda variant cannot be loaded here (${why || `exit ${probe.status}`}). Nothing was run.`);
    process.exit(0);
}
if (device.loadError != null) {
    console.log(`test:gpu: no CUDA device: the cuda variant cannot be loaded here (${device.loadError}). Nothing was run.`);
    process.exit(0);
}
if (!device.built) {
    console.log(`test:gpu: the cuda variant has no CUDA kernels: ${device.reason}. Nothing was run.`);
    process.exit(0);
}
if (!device.available) {
    console.log(`test:gpu: no CUDA device: ${device.reason}. Nothing was run.`);
    process.exit(0);
}
console.log(`test:gpu: ${device.name} (compute ${device.computeCapability}), kernels for ${device.archs}`);
const mocha = spawnSync(process.execPath, [path.join(root, "node_modules", "mocha", "bin", "mocha.js"), "--no-config", "--timeout", "600000",
    "--exit", path.join(root, "dist", "test", "gpu", "*.test.js")], {stdio: "inherit", cwd: root});
process.exit(mocha.status ?? 1);
