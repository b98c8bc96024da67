// Runs the black-box conformance suite against our real server on every selected runtime
// (E2E_RUNTIMES=node20,node24,deno,bun; default all four). Node runs dist/: `npm run build` first.
// Run: node --import tsx --test --test-concurrency=1 tests/e2e/runtimes.e2e.ts

import { after, afterEach, before, describe } from "node:test";
import { type RunningChild, selectedRuntimes, type ServerRuntime, startServer } from "../_helpers/server.ts";
import { conformanceSuite, type SuiteOptions } from "./suite.ts";

/** Short presence grace for the main server, so leave tests stay fast. */
const GRACE_MS = 300;

/** What differs between runtimes, as flags (never as copied tests). */
function runtimeFlags(runtime: ServerRuntime): Pick<SuiteOptions, "rejectedUpgradeHasBody"> {
  return {
    // Every runtime now sends the body of a refused upgrade (Node once answered with the status only);
    // set this to false for a runtime that cannot, and only the status is checked there.
    rejectedUpgradeHasBody: true,
  };
}

for (const runtime of selectedRuntimes()) {
  describe(runtime, () => {
    let main: RunningChild | undefined;
    let defaults: RunningChild | undefined;
    const extra = new Set<RunningChild>();

    before(async () => {
      [main, defaults] = await Promise.all([
        startServer(runtime, { PRESENCE_GRACE_S: String(GRACE_MS / 1000) }),
        startServer(runtime, {}),
      ]);
    });

    after(async () => {
      await Promise.all([main?.stop(), defaults?.stop(), ...[...extra].map((s) => s.stop())]);
    });

    // A server that died fails the test during which it died, and every later one, with its output.
    const deaths = new Map<RunningChild, string>();
    afterEach(() => {
      for (const s of [main, defaults]) {
        if (!s || deaths.has(s) || (s.proc.exitCode === null && s.proc.signalCode === null)) continue;
        deaths.set(s, `exited (${s.proc.exitCode ?? s.proc.signalCode}); last output:\n${s.output.slice(-15).join("\n")}`);
        throw new Error(`${runtime}: a server ${deaths.get(s)}`);
      }
    });

    const need = (s: RunningChild | undefined, what: string): RunningChild => {
      if (!s) throw new Error(`${runtime}: the ${what} server did not start`);
      const death = deaths.get(s) ?? (s.proc.exitCode !== null ? "exited" : undefined);
      if (death) throw new Error(`${runtime}: the ${what} server ${death}`);
      return s;
    };

    conformanceSuite(() => need(main, "main"), {
      graceMs: GRACE_MS,
      getDefaultServer: () => need(defaults, "default-settings"),
      start: async (env = {}) => {
        const server = await startServer(runtime, env);
        extra.add(server);
        void server.proc.once("exit", () => extra.delete(server));
        return server;
      },
      ...runtimeFlags(runtime),
    });
  });
}
