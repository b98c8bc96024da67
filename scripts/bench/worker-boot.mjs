// Loads the TypeScript worker through tsx (a worker thread does not inherit `--import tsx` on Node 20).
import { register } from "tsx/esm/api";

register();
await import("./worker.ts");
