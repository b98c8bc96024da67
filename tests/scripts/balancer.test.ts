// The cluster launcher's round-robin TCP balancer (scripts/lib/balancer.ts) against tiny TCP servers on
// loopback that greet each connection with their name and then echo (Deno runs it with
// --allow-net=127.0.0.1, see scripts/test.mjs).

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { type BalancerEvent, startBalancer } from "../../scripts/lib/balancer.ts";


interface Echo {
  port: number;
  close(): Promise<void>;
}

/** A TCP server that writes `name:` on connect, then echoes. */
function echoServer(name: string): Promise<Echo> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
    s.write(`${name}:`);
    s.pipe(s);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const s of sockets) s.destroy();
          }),
      })
    )
  );
}

/** Connects through the balancer, sends `text`, and resolves with everything received until `want` bytes (or close). */
function exchange(port: number, text: string, want: number): Promise<{ got: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: "127.0.0.1" });
    let got = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timed out with ${JSON.stringify(got)}`));
    }, 3000);
    const done = (closed: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ got, closed });
    };
    sock.on("connect", () => sock.write(text));
    sock.on("data", (d: Buffer) => {
      got += d.toString();
      if (got.length >= want) done(false);
    });
    sock.on("error", () => done(true));
    sock.on("close", () => done(true));
  });
}

/** A port nothing listens on (a server bound and closed again). */
async function deadPort(): Promise<number> {
  const e = await echoServer("gone");
  await e.close();
  return e.port;
}

describe("round-robin TCP balancer", () => {
  it("alternates new connections between backends and pipes bytes both ways", async () => {
    const a = await echoServer("A");
    const b = await echoServer("B");
    const lb = await startBalancer({ backends: [{ host: "127.0.0.1", port: a.port }, { host: "127.0.0.1", port: b.port }] });
    try {
      const got: string[] = [];
      for (let i = 0; i < 4; i++) got.push((await exchange(lb.port, `hello${i}`, 8)).got);
      assert.deepEqual(got, ["A:hello0", "B:hello1", "A:hello2", "B:hello3"]);
      assert.deepEqual(lb.routed, [2, 2]);
    } finally {
      await lb.close();
      await a.close();
      await b.close();
    }
  });

  it("skips a backend that refuses, and keeps the rest evenly loaded", async () => {
    const a = await echoServer("A");
    const c = await echoServer("C");
    const events: BalancerEvent[] = [];
    const lb = await startBalancer({
      backends: [{ host: "127.0.0.1", port: a.port }, { host: "127.0.0.1", port: await deadPort() }, { host: "127.0.0.1", port: c.port }],
      onEvent: (e) => events.push(e),
    });
    try {
      const got: string[] = [];
      for (let i = 0; i < 6; i++) got.push((await exchange(lb.port, "x", 3)).got[0]!);
      assert.deepEqual(got, ["A", "C", "A", "C", "A", "C"]);
      assert.deepEqual(lb.routed, [3, 0, 3]);
      assert.ok(events.length >= 1 && events.every((e) => e.type === "skipped"), JSON.stringify(events));
    } finally {
      await lb.close();
      await a.close();
      await c.close();
    }
  });

  it("a backend that goes away mid-run is skipped from then on", async () => {
    const a = await echoServer("A");
    const b = await echoServer("B");
    const lb = await startBalancer({ backends: [{ host: "127.0.0.1", port: a.port }, { host: "127.0.0.1", port: b.port }] });
    try {
      assert.equal((await exchange(lb.port, "1", 3)).got, "A:1");
      assert.equal((await exchange(lb.port, "2", 3)).got, "B:2");
      await b.close();
      const got: string[] = [];
      for (let i = 0; i < 3; i++) got.push((await exchange(lb.port, "z", 3)).got);
      assert.deepEqual(got, ["A:z", "A:z", "A:z"]);
    } finally {
      await lb.close();
      await a.close();
    }
  });

  it("closes the client when no backend accepts, and survives clients that reset or vanish", async () => {
    const events: BalancerEvent[] = [];
    const lb = await startBalancer({
      backends: [{ host: "127.0.0.1", port: await deadPort() }, { host: "127.0.0.1", port: await deadPort() }],
      onEvent: (e) => events.push(e),
    });
    try {
      const r = await exchange(lb.port, "anyone?", 1);
      assert.deepEqual(r, { got: "", closed: true });
      assert.equal(events.filter((e) => e.type === "unrouted").length, 1);
      // Clients that go away at once, some with an RST, while their backend is still being tried.
      for (let i = 0; i < 20; i++) {
        const s = net.connect({ port: lb.port, host: "127.0.0.1" });
        s.on("error", () => {});
        s.on("connect", () => (i % 2 ? s.resetAndDestroy() : s.destroy()));
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(lb.open, 0);
      assert.deepEqual(await exchange(lb.port, "still there?", 1), { got: "", closed: true });
    } finally {
      await lb.close();
    }
  });

  it("a backend dying mid-connection closes its client and nothing else", async () => {
    const a = await echoServer("A");
    const lb = await startBalancer({ backends: [{ host: "127.0.0.1", port: a.port }] });
    try {
      const sock = net.connect({ port: lb.port, host: "127.0.0.1" });
      const closed = new Promise<void>((r) => sock.on("close", () => r()));
      sock.on("error", () => {});
      await new Promise<void>((r) => sock.once("data", () => r()));
      assert.equal(lb.open, 1);
      await a.close();
      await closed;
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(lb.open, 0);
    } finally {
      await lb.close();
    }
  });
});
