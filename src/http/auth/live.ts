// One authenticated connection while it is open: closes it with 1008 when its credential expires
// or its session is logged out, and takes a fresh token from an {"type":"auth","token":...} frame.

import { roomAllowed } from "./rooms.ts";
import type { Identity } from "./types.ts";

/** What the connection layer (chat-socket.ts) gives a live access. */
export interface LiveControl {
  /** Removes the connection from its room and closes it. */
  close(code: number, reason: string, why: "token_expired" | "logged_out"): void;
  /** Sends one server frame to this connection only. */
  send(frame: { type: "auth_ok"; exp: number } | { type: "error"; code: "unauthorized"; message: string }): void;
}

/** What a live access needs from the auth service. */
export interface LiveHost {
  /** Verifies a fresh token from an auth frame; a message when it is refused. */
  refresh(token: string): Promise<{ ok: true; identity: Identity } | { ok: false; message: string }>;
  track(sid: string, live: LiveAccess): void;
  untrack(sid: string, live: LiveAccess): void;
  now(): number;
}

/** setTimeout's longest delay. */
const MAX_DELAY_MS = 2 ** 31 - 1;
const POLICY = 1008;

export class LiveAccess {
  readonly identity: Identity;
  readonly room: string;
  #host: LiveHost;
  #ctl?: LiveControl;
  #timer?: ReturnType<typeof setTimeout>;
  #stopped = false;
  /** Auth frames are answered one after the other, in the order they came. */
  #queue: Promise<void> = Promise.resolve();

  constructor(identity: Identity, room: string, host: LiveHost) {
    this.identity = { ...identity };
    this.room = room;
    this.#host = host;
  }

  /** Called once the connection is in its room. */
  start(ctl: LiveControl): void {
    if (this.#stopped) return;
    this.#ctl = ctl;
    if (this.identity.sid) this.#host.track(this.identity.sid, this);
    this.#arm();
  }

  /** Called when the connection is gone, whatever closed it. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.identity.sid) this.#host.untrack(this.identity.sid, this);
  }

  /** The session behind this connection was logged out. */
  revoke(): void {
    this.#end("logged out", "logged_out");
  }

  /** An auth frame: a fresh token for the same user extends the connection. Answers keep frame order. */
  refresh(token: string): Promise<void> {
    this.#queue = this.#queue.then(() => this.#refresh(token), () => this.#refresh(token));
    return this.#queue;
  }

  async #refresh(token: string): Promise<void> {
    if (this.#stopped) return;
    const result = await this.#host.refresh(token);
    if (this.#stopped) return;
    const refuse = (message: string) => this.#ctl?.send({ type: "error", code: "unauthorized", message });
    if (!result.ok) return void refuse(`Cannot accept auth: ${result.message}`);
    const fresh = result.identity;
    if (fresh.sub !== this.identity.sub) return void refuse("Cannot accept auth: the token is for another user");
    if (!roomAllowed(fresh.rooms, this.room)) return void refuse(`Cannot accept auth: the token does not allow room "${this.room}"`);
    this.identity.exp = fresh.exp;
    this.identity.rooms = fresh.rooms;
    this.#arm();
    this.#ctl?.send({ type: "auth_ok", exp: fresh.exp ?? 0 });
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const exp = this.identity.exp;
    if (exp === undefined || this.#stopped) return;
    const left = exp * 1000 - this.#host.now();
    if (left <= 0) return this.#end(this.identity.sid ? "session expired" : "token expired", "token_expired");
    this.#timer = setTimeout(() => this.#arm(), Math.min(left, MAX_DELAY_MS));
    (this.#timer as { unref?: () => void }).unref?.(); // never what keeps a process alive
  }

  #end(reason: string, why: "token_expired" | "logged_out"): void {
    if (this.#stopped) return;
    const ctl = this.#ctl;
    this.stop();
    ctl?.close(POLICY, reason, why);
  }
}
